"""cqa_utils: the package behind the CQA replication book (reusable parts; each expensive step one cached call)."""

import warnings

# transformers imports tqdm, which warns on import inside a Jupyter kernel without ipywidgets; the notebooks
# import this package first, so the filter is in place before that happens (it hides only that warning)
warnings.filterwarnings("ignore", message=".*IProgress not found.*")

__version__ = "0.2.0"

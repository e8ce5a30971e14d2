"""What every notebook does first: resolve the profile, open the run directory, set up display.

Under ``cqa run`` the environment variable ``CQA_BOOK_RENDERER=1`` makes plotly emit HTML that
uses a page-level plotly.js (copied into the book's ``_static/`` by ``cqa book``), so figures
draw in the built book without any network; in Jupyter plotly's own renderer is left alone.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.io as pio
from IPython.display import Markdown

from cqa_utils.method.config import DataPaths, Profile, default_run_dir, get_profile
from cqa_utils.pipeline.artifacts import Run
from cqa_utils.pipeline.cache import load_output, refresh_model, run_step


def _plotly_for_book() -> None:
    if "cqa_book" not in pio.renderers:
        pio.renderers["cqa_book"] = pio.base_renderers.HtmlRenderer(include_plotlyjs=False, full_html=False)
    # the JSON half keeps figures interactive in JupyterLab; the HTML half is what the book renders
    pio.renderers.default = "plotly_mimetype+cqa_book"


@dataclass
class Stage:
    """A notebook's handle on its profile, run directory and data."""

    profile: Profile
    run: Run
    data: DataPaths
    name: str
    started: float = field(default_factory=time.perf_counter)

    @property
    def standin(self) -> bool:
        return self.data.is_standin()

    def progress(self, msg: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self.started:7.1f}s] {msg}", flush=True)

    def step(self, step: str, fn: Callable[..., None], **args: Any) -> Path:
        """Run an expensive step once per key (see :func:`cqa_utils.pipeline.cache.run_step`); returns its folder."""
        return run_step(self.run, step, fn, self.progress, self.name, **args)

    def load_step(self, step: str, name: str) -> Any:
        """Read an output of a step that already ran in this run directory."""
        return load_output(self.run.step_dir(step), name)


def setup(stage: str, profile: str, run_dir: str = "", data_dir: str = "", hparams: dict[str, Any] | None = None,
          device: str = "", model: str = "") -> Stage:
    """Resolve the profile (on ``device``, with ``model`` for a hub profile, and with the §3.4 settings ``hparams``
    changes for this run), open the run directory (``run_dir``; empty: ``runs/<profile>``), configure display.

    Under ``cqa run`` every argument is a notebook parameter that :func:`cqa_utils.pipeline.run.run_pipeline`
    resolved once and passed to every notebook, so the executed notebook records the device and model it ran
    with; empty ``device`` or ``model`` (Jupyter) means the profile's own. The profile is handed on in
    ``Stage.profile``: every step the notebook runs receives it, so the settings changed for this run are in
    those steps' keys. A stale converted model copy is dropped here (see :mod:`cqa_utils.pipeline.weights`)."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the executed notebooks
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    # deferred: transformers imports tqdm, which warns about IProgress unless the filter above is set first
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pd.set_option("display.precision", 4)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 200)
    if os.environ.get("CQA_BOOK_RENDERER"):
        _plotly_for_book()
    prof = get_profile(profile, device or None, model or None, hparams=hparams)
    why = refresh_model(prof)
    st = Stage(prof, Run(Path(run_dir) if run_dir else default_run_dir(prof.name), prof.name), DataPaths.from_dir(data_dir or None), stage)
    if why:
        st.progress(f"the converted {prof.name} model is rebuilt: {why}")
    if prof.run_hparams:
        st.progress("§3.4 settings set for this run: " + ", ".join(f"{k}={v!r}" for k, v in prof.run_hparams))
    return st


STANDIN_BANNER = ("**Stand-in data.** The paper's SNAKE-100 corpus and its benchmark are not released. Every number "
                  "on this page comes from the stand-in written for this replication (`data/standin`, see "
                  "`data/DATASHEET.md`), not from the paper's data.")


def banner(stage: Stage) -> Any:
    """A Markdown banner naming the data and model this page's numbers come from."""
    parts = [STANDIN_BANNER] if stage.standin else [f"Data: the folder `{stage.data.train.parent.name}/` (user-supplied files)."]
    parts.append(f"Profile **{stage.profile.name}**: {stage.profile.model_id} ({stage.profile.dtype}, {stage.profile.device}).")
    if stage.profile.run_hparams:
        parts.append("§3.4 settings set for this run (the paper's values are in the Deviations chapter): "
                     + ", ".join(f"`{k}` = {v}" for k, v in stage.profile.run_hparams) + ".")
    return Markdown("\n\n".join(parts))

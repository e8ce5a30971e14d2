"""What every notebook does first: resolve the profile, open the run directory, set up display.

Under ``cqa run`` the environment variable ``CQA_BOOK_RENDERER=1`` makes plotly emit HTML that
uses a page-level plotly.js (copied into the book's ``_static/`` by ``cqa book``), so figures
draw in the built book without any network; in Jupyter plotly's own renderer is left alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import Run
from .config import DataPaths, Profile, get_profile


def _plotly_for_book() -> None:
    import plotly.io as pio

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


def setup(stage: str, profile: str, run_dir: str, data_dir: str = "", overrides: dict[str, Any] | None = None) -> Stage:
    """Resolve the profile (with hyperparameter overrides), open the run directory, configure display."""
    import warnings

    import pandas as pd

    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the executed notebooks
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pd.set_option("display.precision", 4)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 200)
    if os.environ.get("CQA_BOOK_RENDERER"):
        _plotly_for_book()
    prof = get_profile(profile)
    if overrides:
        prof = prof.with_overrides(**overrides)
    return Stage(prof, Run(Path(run_dir), prof.name), DataPaths.from_dir(data_dir or None), stage)


STANDIN_BANNER = ("**Stand-in data.** The paper's SNAKE-100 corpus and its benchmark are not released. Every number "
                  "on this page comes from the stand-in written for this replication (`data/standin`, see "
                  "`data/DATASHEET.md`), not from the paper's data.")


def banner(stage: Stage) -> Any:
    """A Markdown banner naming the data and model this page's numbers come from."""
    from IPython.display import Markdown

    parts = [STANDIN_BANNER] if stage.standin else [f"Data: `{stage.data.train.parent}` (user-supplied files)."]
    parts.append(f"Profile **{stage.profile.name}**: {stage.profile.model_id} ({stage.profile.dtype}, {stage.profile.device}).")
    return Markdown("\n\n".join(parts))


def cached(stage: Stage, inputs: dict[str, Any], compute: Any) -> bool:
    """Run ``compute()`` unless this stage already finished with exactly these inputs.

    Returns True when the stored artifacts were reused. The key is a hash of ``inputs`` (data file
    hashes, configuration, model identity, the stage's code version, upstream stage keys).
    """
    from .artifacts import key_of

    key = key_of(inputs)
    if stage.run.is_fresh(stage.name, key):
        stage.progress(f"inputs unchanged (key {key[:12]}): reusing stored artifacts")
        rec = stage.run.stage_record(stage.name) or {}
        stage.run.mark_done(stage.name, key, inputs, rec.get("wall_s", 0.0), reused=True)
        return True
    t0 = time.perf_counter()
    compute()
    stage.run.mark_done(stage.name, key, inputs, time.perf_counter() - t0, reused=False)
    return False


def stage_key(stage: Stage, name: str) -> str:
    """The key an upstream stage finished with (so a change upstream invalidates this stage)."""
    from .artifacts import RunDirError

    rec = stage.run.stage_record(name)
    if not rec or not rec.get("complete"):
        raise RunDirError(f"stage {name} has not finished in {stage.run.dir}: run notebook {name} (or `cqa run`) first")
    return rec["key"]


def model_key(profile: Profile) -> dict[str, Any]:
    """Model identity for cache keys: the hub id, or the local copy's provenance record."""
    import json

    from .models import MODEL_CACHE

    rec = MODEL_CACHE / profile.name / "cqa_model.json"
    return {"profile": profile.name, "model_id": profile.model_id, "dtype": profile.dtype,
            "local": json.loads(rec.read_text()) if rec.exists() else None}

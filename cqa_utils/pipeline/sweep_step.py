"""Scoring the base model and an adapter's epoch checkpoints on a benchmark, as one cached step.

Outputs in the step folder: ``pair_scores.parquet`` and ``continuation_scores.parquet`` (one row
per model and item, raw log-probabilities in nats) and ``timings.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cqa_utils.method.config import Profile
from cqa_utils.method.models import model_identity
from cqa_utils.method.scoring import Scorer
from cqa_utils.method.sweep import score_epochs
from cqa_utils.method.train import complete_checkpoints
from cqa_utils.pipeline.artifacts import write_table


def score_checkpoints(out: Path, profile: Profile, pairs: Sequence[dict[str, Any]], continuations: Sequence[dict[str, Any]],
                      adapter: Path, epochs: Sequence[int], progress: Callable[[str], None] = print) -> None:
    """Score the base model and ``adapter``'s checkpoints of ``epochs`` (a training step's folder)."""
    scorer = Scorer.for_profile(profile)
    ckpts = complete_checkpoints(Path(adapter) / "checkpoints")
    p, c, t = score_epochs(scorer, list(pairs), list(continuations), ckpts, list(epochs), model_identity(scorer.model), progress)
    write_table(Path(out) / "pair_scores.parquet", p)
    if len(c):
        write_table(Path(out) / "continuation_scores.parquet", c)
    write_table(Path(out) / "timings.csv", t)

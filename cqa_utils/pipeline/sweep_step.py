"""Scoring the base model and an adapter's epoch checkpoints on a benchmark, as one cached step.

Outputs in the step folder: ``pair_scores.parquet`` and ``continuation_scores.parquet`` (one row
per model and item, raw log-probabilities in nats) and ``timings.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cqa_utils.method.config import Profile
from cqa_utils.method.epoch_scoring import EPOCH_TIMES, read_epoch_continuations, read_epoch_scores
from cqa_utils.method.models import model_identity
from cqa_utils.method.scoring import Scorer
from cqa_utils.method.sweep import score_benchmark, score_epochs
from cqa_utils.method.train import complete_checkpoints
from cqa_utils.pipeline.artifacts import write_table


def score_checkpoints(out: Path, profile: Profile, pairs: Sequence[dict[str, Any]], continuations: Sequence[dict[str, Any]],
                      adapter: Path, epochs: Sequence[int], live: bool = False, pair_set: str = "benchmark",
                      progress: Callable[[str], None] = print) -> None:
    """Score the base model and ``adapter``'s checkpoints of ``epochs`` (a training step's folder).

    With ``live`` only the base model is scored here: the adapter's rows are those its training step scored
    with the live adapter at each epoch end (set ``pair_set``; :mod:`cqa_utils.method.epoch_scoring`), which
    equal scoring the saved checkpoints. Those scores are a by-product outside the training step's key (an
    ``extras`` argument of :func:`cqa_utils.pipeline.cache.run_step`): when they were computed on other pairs
    (a benchmark item edited after training) or lack an epoch, the saved checkpoints are scored instead, so an
    edited item re-runs the sweeps and not the training. The checkpoints stay on disk either way.
    """
    scorer = Scorer.for_profile(profile)
    if live:
        try:  # the training step's by-product; stale when the pairs changed after it trained (its key does not cover them)
            live_p = read_epoch_scores(adapter, pair_set, pairs, epochs)
            live_c = read_epoch_continuations(adapter, continuations, epochs) if continuations else pd.DataFrame()
        except (FileNotFoundError, KeyError, ValueError) as e:  # the message names the file: keep it out of the book
            kind = "computed on other pairs" if isinstance(e, ValueError) else "missing for a set or an epoch"
            progress(f"  the training step's live scores are {kind}; scoring the saved checkpoints instead")
            live = False
    if not live:
        ckpts = complete_checkpoints(Path(adapter) / "checkpoints")
        p, c, t = score_epochs(scorer, list(pairs), list(continuations), ckpts, list(epochs), model_identity(scorer.model), progress)
    else:
        t0 = time.perf_counter()
        bp, bc = score_benchmark(scorer, list(pairs), list(continuations))
        dt = time.perf_counter() - t0
        progress(f"  base model scored in {dt:.1f} s; {len(epochs)} epochs read from the training step's live scores")
        p = pd.concat([bp.assign(model="base", epoch=0), live_p], ignore_index=True)
        c = pd.concat([bc.assign(model="base", epoch=0), live_c], ignore_index=True) if continuations else pd.DataFrame()
        during = pd.read_csv(Path(adapter) / EPOCH_TIMES)  # every set scored at that epoch end, together
        during = during[during.epoch.isin(list(epochs))]
        during = during.assign(model="epoch-" + during.epoch.astype(str), during_training=True)
        t = pd.concat([pd.DataFrame([{"model": "base", "epoch": 0, "wall_s": dt, "during_training": False}]),
                       during[["model", "epoch", "wall_s", "during_training"]]], ignore_index=True)
    write_table(Path(out) / "pair_scores.parquet", p)
    if len(c):
        write_table(Path(out) / "continuation_scores.parquet", c)
    write_table(Path(out) / "timings.csv", t)

"""Training a LoRA adapter as one cached step (see :mod:`cqa_utils.pipeline.cache`).

Outputs in the step folder: ``checkpoints/checkpoint-<step>`` (one per epoch), ``epochs.csv``
(train and eval loss, wall time per epoch), ``log_history.json`` and ``summary.json``; with ``epoch_pairs``,
the pair scores of the live adapter at every epoch end (:mod:`cqa_utils.method.epoch_scoring`:
``epoch_scores.parquet``, ``epoch_continuation_scores.parquet``, ``epoch_scoring_times.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cqa_utils.method.config import Profile
from cqa_utils.method.epoch_scoring import EpochScoring
from cqa_utils.method.models import load_model, load_tokenizer
from cqa_utils.method.scoring import Scorer
from cqa_utils.method.train import complete_checkpoints, lora_config, train
from cqa_utils.pipeline.artifacts import write_json, write_table


def train_adapter(out: Path, profile: Profile, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]],
                  fast: bool = True, stop_after_epoch: int | None = None,
                  epoch_pairs: dict[str, list[dict[str, Any]]] | None = None,
                  epoch_continuations: list[dict[str, Any]] | None = None,
                  progress: Callable[[str], None] = print) -> None:
    """Fine-tune the profile's base model on ``train_rows`` with the paper's settings.

    ``stop_after_epoch`` ends training after that epoch while keeping the full schedule (the
    learning rate follows the 12-epoch cosine curve): the first epochs are identical to a full run.
    ``epoch_pairs`` (set name -> pair rows, e.g. the benchmark and the calibration pairs) and
    ``epoch_continuations`` (passages) are scored with the live adapter at every epoch end; a checkpoint
    trained earlier without them (a resumed run) is scored from its saved adapter the same way.
    """
    tok = load_tokenizer(profile)
    scoring = None
    if epoch_pairs:  # loaded before the base to train, so nothing here draws from training's seeded RNG
        scoring = EpochScoring(Scorer.for_profile(profile, tokenizer=tok), epoch_pairs, Path(out), lora_config(profile.hparams),
                               continuations=epoch_continuations or [], progress=progress)
    model = load_model(profile)
    progress(f"training on {len(train_rows)} rows, validating on {len(val_rows)}; "
             f"{profile.hparams.num_train_epochs} epochs" + (f", stopping after epoch {stop_after_epoch}" if stop_after_epoch else ""))
    summ = train(profile, model, tok, train_rows, val_rows, Path(out) / "checkpoints", resume=True, fast=fast,
                 progress=progress, stop_after_epoch=stop_after_epoch, callbacks=[scoring] if scoring else [])
    if scoring:
        done = scoring.scored_epochs()
        for epoch, ckpt in complete_checkpoints(Path(out) / "checkpoints").items():
            if epoch not in done:
                scoring.score_checkpoint(epoch, ckpt)
    write_table(Path(out) / "epochs.csv", pd.DataFrame(summ.pop("epochs")))
    write_json(Path(out) / "log_history.json", summ.pop("log_history"))
    write_json(Path(out) / "summary.json", summ)

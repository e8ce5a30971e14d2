"""Δ(ΔI) while training runs (§6.6), checkpoint selection on held-out pairs, and the data-scale subsets (§4.4).

**Scoring at every epoch end.** :class:`EpochScoring` is a ``transformers`` trainer callback. At the end of each
epoch it copies the live adapter's LoRA weights (in memory, no reload from disk) into a scoring copy of the base
model and scores pair sets (the benchmark and the calibration pairs) and, optionally, the benchmark's
continuation passages with the one :class:`~cqa_utils.method.scoring.Scorer`, through the very function the epoch
sweep uses (:func:`cqa_utils.method.sweep.score_benchmark`: on fp32 weights the adapter is merged while scored and
the base restored bit-exactly). The scores are therefore those of the saved checkpoint of that epoch scored by
the sweep (tests/test_epoch_scoring.py checks it).

Why a scoring copy of the base rather than the model being trained: where the CPU computes bf16 natively,
training runs on a bf16 copy of the base (:func:`cqa_utils.method.models.for_training`) while every score in the
book is computed on the fp32 base; scoring the live model would mix precisions between the base row and the
adapter rows of Δ(ΔI). The copy costs one more base model in memory (0.5 GB for SmolLM2; 15 GB of GPU memory for
Qwen2.5-7B). The model being trained is never touched, and the torch random state is saved before scoring and
restored after it, so training proceeds exactly as without the callback (test: identical losses).

**Selection on held-out pairs.** :func:`select_epoch` picks the epoch with the largest mean literary Δ(ΔI) on
the *calibration* pairs (which the CoT adapter never trained on); ties go to the earliest epoch.

**Nested, stratified subsets.** :func:`nested_order` orders the training rows so that every prefix is a
subset stratified by touch set (the sorted set of the row's ``touches``: e.g. ``audience+intent+reality``),
and :func:`nested_subsets` takes the prefixes of the requested sizes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import TrainerCallback

from cqa_utils.method import stats
from cqa_utils.method.scoring import Scorer
from cqa_utils.method.sweep import score_benchmark
from cqa_utils.pipeline.artifacts import write_json, write_table
from cqa_utils.pipeline.keys import key_of

EPOCH_SCORES = "epoch_scores.parquet"  # one row per (set, epoch, pair): the sweep's pair-score columns + set
EPOCH_CONT_SCORES = "epoch_continuation_scores.parquet"  # one row per (epoch, passage)
EPOCH_TIMES = "epoch_scoring_times.csv"  # seconds spent scoring at each epoch end
EPOCH_SETS = "epoch_scores.json"  # what was scored: a content key per pair set and for the passages


class EpochScoring(TrainerCallback):
    """Scores ``pair_sets`` (name -> pair rows) and ``continuations`` with the live adapter at each epoch end.

    ``scorer`` holds a *base* model that is not the one being trained (see the module docstring); it is wrapped
    here in ``lora`` (the training's LoRA config) once, before training starts. ``out_dir`` receives
    :data:`EPOCH_SCORES`, :data:`EPOCH_CONT_SCORES` and :data:`EPOCH_TIMES`, rewritten after every epoch (rows of an
    epoch scored again, after a resume, replace the old ones). ``epochs``: score only these (None: all).
    """

    def __init__(self, scorer: Scorer, pair_sets: dict[str, Sequence[dict[str, Any]]], out_dir: Path, lora: Any,
                 continuations: Sequence[dict[str, Any]] = (), epochs: Sequence[int] | None = None,
                 progress: Callable[[str], Any] = print):
        if not pair_sets:
            raise ValueError("EpochScoring needs at least one pair set to score")
        with torch.random.fork_rng(devices=_rng_devices()):  # peft initialises LoRA weights from the RNG
            model = get_peft_model(scorer.model, lora)
        model.eval()
        self.scorer = scorer.with_model(model)
        self.pair_sets = {k: list(v) for k, v in pair_sets.items()}
        self.continuations = list(continuations)
        self.out_dir, self.epochs, self.progress = Path(out_dir), None if epochs is None else set(epochs), progress
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / EPOCH_SETS, {"pair_sets": {k: key_of(v) for k, v in self.pair_sets.items()},
                                                "continuations": key_of(self.continuations)})

    def on_epoch_end(self, args, state, control, model=None, **kw):
        epoch = int(round(state.epoch))
        if self.epochs is None or epoch in self.epochs:
            self.score_weights(epoch, get_peft_model_state_dict(model))

    def score_checkpoint(self, epoch: int, ckpt: Path) -> None:
        """Score a saved checkpoint's adapter the same way (for epochs trained before the callback existed)."""
        self.score_weights(epoch, load_file(str(Path(ckpt) / "adapter_model.safetensors")))

    def score_weights(self, epoch: int, lora_state: dict[str, torch.Tensor]) -> None:
        """Load ``lora_state`` into the scoring model and score every set; append the rows to the files."""
        t0 = time.perf_counter()
        res = set_peft_model_state_dict(self.scorer.model, lora_state)
        missing = [k for k in res.missing_keys if "lora_" in k]
        if missing or res.unexpected_keys:
            raise RuntimeError(f"epoch {epoch}: the adapter's weights do not fit the scoring model "
                               f"(missing {missing[:3]}, unexpected {list(res.unexpected_keys)[:3]})")
        pair_frames, cont = [], pd.DataFrame()
        with torch.random.fork_rng(devices=_rng_devices()), torch.no_grad():
            for i, (name, rows) in enumerate(self.pair_sets.items()):
                p, c = score_benchmark(self.scorer, rows, self.continuations if i == 0 else [])
                pair_frames.append(p.assign(model=f"epoch-{epoch}", epoch=epoch, set=name))
                cont = c if i == 0 else cont
        dt = time.perf_counter() - t0
        self._append(EPOCH_SCORES, pd.concat(pair_frames, ignore_index=True) if pair_frames else pd.DataFrame(), epoch)
        if len(cont):
            self._append(EPOCH_CONT_SCORES, cont.assign(model=f"epoch-{epoch}", epoch=epoch), epoch)
        n_pairs = sum(len(v) for v in self.pair_sets.values())
        self._append(EPOCH_TIMES, pd.DataFrame([{"epoch": epoch, "wall_s": dt, "pairs": n_pairs,
                                                  "passages": len(self.continuations)}]), epoch)
        sets = " + ".join(f"{len(v)} {k}" for k, v in self.pair_sets.items())
        self.progress(f"  epoch {epoch}: scored {sets} pairs" + (f" and {len(self.continuations)} passages" if self.continuations else "")
                      + f" with the live adapter in {dt:.1f} s")

    def _append(self, name: str, df: pd.DataFrame, epoch: int) -> None:
        path = self.out_dir / name
        old = pd.read_parquet(path) if path.suffix == ".parquet" and path.exists() else (
            pd.read_csv(path) if path.exists() else pd.DataFrame())
        if len(old):
            old = old[old.epoch != epoch]
        write_table(path, pd.concat([old, df], ignore_index=True).sort_values("epoch", kind="stable").reset_index(drop=True))

    def scored_epochs(self) -> set[int]:
        """Epochs already in :data:`EPOCH_TIMES` (every set of an epoch is written before its time)."""
        path = self.out_dir / EPOCH_TIMES
        return set(pd.read_csv(path).epoch.astype(int)) if path.exists() else set()


def _rng_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def read_epoch_scores(step_dir: Path, pair_set: str, pairs: Sequence[dict[str, Any]], epochs: Sequence[int]) -> pd.DataFrame:
    """The callback's rows of ``pair_set`` at ``epochs`` from a training step's folder, in the sweep's columns.

    Refuses (naming the file) when the folder holds no epoch scores, when they were computed on other pairs
    than ``pairs`` (content key), or when an epoch is missing.
    """
    step_dir = Path(step_dir)
    meta_path, path = step_dir / EPOCH_SETS, step_dir / EPOCH_SCORES
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"{path}: no per-epoch scores; train with epoch_pairs to score during training")
    keys = json.loads(meta_path.read_text())["pair_sets"]
    if pair_set not in keys:
        raise KeyError(f"{meta_path}: pair set {pair_set!r} was not scored during training (have {sorted(keys)})")
    if keys[pair_set] != key_of(list(pairs)):
        raise ValueError(f"{meta_path}: the {pair_set!r} pairs scored during training differ from the pairs given")
    df = pd.read_parquet(path)
    df = df[(df.set == pair_set) & df.epoch.isin(list(epochs))].drop(columns="set")
    missing = sorted(set(epochs) - set(df.epoch.astype(int)))
    if missing:
        raise FileNotFoundError(f"{path}: no {pair_set!r} scores for epoch(s) {missing}")
    return df.reset_index(drop=True)


def read_epoch_continuations(step_dir: Path, continuations: Sequence[dict[str, Any]], epochs: Sequence[int]) -> pd.DataFrame:
    """The callback's passage rows at ``epochs`` (refused as in :func:`read_epoch_scores`)."""
    step_dir = Path(step_dir)
    path, meta_path = step_dir / EPOCH_CONT_SCORES, step_dir / EPOCH_SETS
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"{path}: no per-epoch passage scores; train with epoch_continuations")
    if json.loads(meta_path.read_text())["continuations"] != key_of(list(continuations)):
        raise ValueError(f"{meta_path}: the passages scored during training differ from the passages given")
    df = pd.read_parquet(path)
    df = df[df.epoch.isin(list(epochs))]
    missing = sorted(set(epochs) - set(df.epoch.astype(int)))
    if missing:
        raise FileNotFoundError(f"{path}: no passage scores for epoch(s) {missing}")
    return df.reset_index(drop=True)


# ------------------------------------------------------------------ checkpoint selection on held-out pairs

SELECTION_RULE = ("the epoch with the largest mean literary Δ(ΔI) on the calibration pairs "
                  "(held out from the CoT adapter's training); ties go to the earliest epoch")


def select_epoch(items: pd.DataFrame, domain: str = "literary") -> tuple[int, pd.Series]:
    """(chosen epoch, mean Δ(ΔI) per epoch) by :data:`SELECTION_RULE` from per-item Δ(ΔI) (``epoch``, ``domain``,
    ``ddI``: :func:`cqa_utils.method.stats.item_deltas` of the calibration scores)."""
    g = items[items.domain == domain]
    if g.empty:
        raise ValueError(f"no {domain} items to select an epoch by")
    means = g.groupby("epoch").ddI.mean().sort_index()
    if means.isna().any():
        raise ValueError(f"mean {domain} Δ(ΔI) undefined at epochs {list(means.index[means.isna()])}")
    best = means.max()
    return int(means.index[means == best][0]), means


def lowest_eval_loss_epoch(epochs: pd.DataFrame) -> int:
    """The epoch of lowest eval_loss (ties: the earliest)."""
    ev = epochs.dropna(subset=["eval_loss"]).sort_values("epoch")
    if ev.empty:
        raise ValueError("no epoch has an eval_loss")
    return int(ev.epoch.iloc[int(np.argmin(ev.eval_loss.to_numpy()))])


def epoch_summary(items: pd.DataFrame, epoch: int, domain: str) -> dict[str, Any]:
    """n, mean Δ(ΔI), bootstrap 95 % CI and one-sided Wilcoxon p of ``domain`` at ``epoch`` (NaN when not scored)."""
    x = items[(items.epoch == epoch) & (items.domain == domain)].ddI.to_numpy(float)
    if x.size == 0:
        return {"n": 0, "delta": math.nan, "ci_low": math.nan, "ci_high": math.nan, "wilcoxon_p": math.nan}
    lo, hi = stats.bootstrap_ci(x)
    return {"n": int(x.size), "delta": float(x.mean()), "ci_low": lo, "ci_high": hi,
            "wilcoxon_p": stats.wilcoxon_greater(x)["wilcoxon_p"] if x.size > 1 else math.nan}


def selection_table(bench_items: pd.DataFrame, cal_items: pd.DataFrame, epochs: pd.DataFrame, primary_epoch: int,
                    unit: str) -> pd.DataFrame:
    """The benchmark's literary and factual Δ(ΔI) at three checkpoints: chosen on the calibration pairs, the
    paper's post-hoc ``primary_epoch``, and the lowest eval_loss."""
    chosen, _ = select_epoch(cal_items)
    rows = []
    for how, e in (("held-out calibration Δ(ΔI)", chosen), ("paper (post hoc)", primary_epoch),
                   ("lowest eval_loss", lowest_eval_loss_epoch(epochs))):
        cal = epoch_summary(cal_items, e, "literary")
        for dom in ("literary", "factual"):
            rows.append({"chosen by": how, "epoch": e, "domain": dom, **epoch_summary(bench_items, e, dom),
                         "calibration literary Δ(ΔI)": cal["delta"], "unit": unit})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ nested stratified subsets (§4.4)

def touch_stratum(row: dict[str, Any]) -> str:
    """A row's stratum: its sorted touch set joined by '+' (``audience+intent``); ``none`` without touches."""
    t = row.get("touches") or []
    return "+".join(sorted(set(t))) or "none"


def nested_order(rows: Sequence[dict[str, Any]], seed: int = 42) -> list[int]:
    """Row indices in an order whose every prefix is stratified by :func:`touch_stratum`.

    Each stratum's rows are shuffled (numpy ``default_rng(seed)``, strata in name order). Position i (0-based)
    then takes the next row of the stratum furthest behind its proportional share, i.e. the largest
    share·(i + 1) − taken (ties: the larger stratum, then the name). Every prefix is therefore a subset of the
    next, and each stratum's count in a prefix of n rows stays close to n·share (tests check within one row).
    """
    strata: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        strata.setdefault(touch_stratum(r), []).append(i)
    rng = np.random.default_rng(seed)
    queues = {k: [strata[k][j] for j in rng.permutation(len(strata[k]))] for k in sorted(strata)}
    n = len(rows)
    share = {k: len(v) / n for k, v in queues.items()}
    taken = dict.fromkeys(queues, 0)
    order = []
    for i in range(n):
        k = max((k for k in queues if taken[k] < len(queues[k])),
                key=lambda k: (share[k] * (i + 1) - taken[k], len(queues[k]), [-ord(c) for c in k]))
        order.append(queues[k][taken[k]])
        taken[k] += 1
    return order


def nested_subsets(rows: Sequence[dict[str, Any]], sizes: Sequence[int], seed: int = 42) -> dict[int, list[int]]:
    """size -> row indices (in :func:`nested_order`): the first ``size`` rows of one stratified order."""
    bad = [s for s in sizes if not 0 < s <= len(rows)]
    if bad:
        raise ValueError(f"subset sizes {bad} are not between 1 and the {len(rows)} training rows")
    order = nested_order(rows, seed)
    return {int(s): order[:s] for s in sizes}


def scale_table(base: pd.DataFrame, adapters: dict[int, pd.DataFrame], epoch: int, unit: str = "bits") -> pd.DataFrame:
    """Δ(ΔI) per training-set size and domain at ``epoch``: n items, mean, bootstrap 95 % CI, one-sided Wilcoxon p.

    ``base``: the base model's pair scores (sweep columns); ``adapters``: rows -> that adapter's pair scores.
    """
    rows = []
    for n_rows, sc in sorted(adapters.items()):
        sc = sc[sc.epoch == epoch]
        if sc.empty:
            raise ValueError(f"the {n_rows}-row adapter has no scores at epoch {epoch}")
        items = stats.item_deltas(pd.concat([base.assign(model="base", epoch=0), sc], ignore_index=True), unit)
        for dom in sorted(items.domain.unique()):
            rows.append({"n_rows": n_rows, "epoch": epoch, "domain": dom, **epoch_summary(items, epoch, dom), "unit": unit})
    return pd.DataFrame(rows)

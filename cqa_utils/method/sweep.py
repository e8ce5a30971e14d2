"""§4.1 epoch sweep: score the base model and each epoch's LoRA adapter on the benchmark.

The base is loaded once; adapters are loaded into it one after another with peft and switched
(:func:`each_adapter`), which scores bit-for-bit as a fresh load of base + adapter. On fp32 weights each
adapter is merged into the base while it is scored (the LoRA side-path costs ~17 % of a CPU forward) and the
base weights are then restored bit-exactly from a copy, so every checkpoint is scored the same way and the
base never drifts. Merged and unmerged scores differ by fp32 rounding (~1e-4 nats on a summed log-prob;
tests/test_sweep.py). On bf16 weights (the ``paper`` profile) adapters stay unmerged: merging would round
W + BA to bf16.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cqa_utils.method.scoring import Result, Scorer, continuation_requests, continuation_table, pair_requests, pair_table


class AdapterMismatch(ValueError):
    """An adapter was trained on a different base model than the one loaded."""


def check_adapter(ckpt: Path, identity: dict[str, Any]) -> None:
    """Refuse an adapter directory that is incomplete or was trained on another base model."""
    ckpt = Path(ckpt)
    for need in ("adapter_config.json", "adapter_model.safetensors"):
        if not (ckpt / need).exists():
            raise AdapterMismatch(f"{ckpt}: not a complete adapter checkpoint ({need} missing)")
    rec = ckpt / "cqa_base.json"
    if rec.exists():
        base = json.loads(rec.read_text())["base"]
        diff = {k: (base.get(k), v) for k, v in identity.items() if base.get(k) != v}
        if diff:
            raise AdapterMismatch(f"{ckpt}: adapter was trained on a different base model; "
                                  f"expected {identity}, adapter records {base} (differs in {sorted(diff)})")


def attach(model: Any, ckpt: Path, name: str, identity: dict[str, Any]) -> Any:
    """Load adapter ``ckpt`` under ``name`` (wrapping the base in a PeftModel the first time) and activate it."""
    from peft import PeftModel  # deferred: importing peft takes seconds, and only adapter loading needs it

    check_adapter(ckpt, identity)
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(ckpt), adapter_name=name, is_trainable=False)
            model.set_adapter(name)
        else:
            model = PeftModel.from_pretrained(model, str(ckpt), adapter_name=name, is_trainable=False)
    except Exception as e:  # size mismatch, truncated or corrupt safetensors, bad config
        raise AdapterMismatch(f"{ckpt}: cannot load adapter onto this base model: {str(e).splitlines()[0][:300]}") from e
    model.eval()
    return model


def detach(model: Any, name: str) -> None:
    """Drop an adapter that is no longer needed (keeps memory flat over the sweep)."""
    if hasattr(model, "delete_adapter") and name in getattr(model, "peft_config", {}):
        model.delete_adapter(name)


@contextmanager
def merged(model: Any, enabled: bool = True) -> Iterator[bool]:
    """Merge the active adapter into fp32 base weights while scoring; restore those weights bit-exactly after.

    Yields whether it merged (not for a bare base, bf16 weights, or ``enabled=False``).
    """
    from peft.tuners.lora import LoraLayer  # deferred: importing peft takes seconds

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)] if enabled and hasattr(model, "merge_adapter") else []
    bases = [m.get_base_layer() for m in layers]
    if not layers or any(b.weight.dtype != torch.float32 for b in bases):
        yield False
        return
    saved = [b.weight.detach().clone() for b in bases]
    model.merge_adapter()
    try:
        yield True
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for b, w in zip(bases, saved):
                b.weight.copy_(w)


def each_adapter(scorer: Scorer, adapters: Sequence[tuple[str, Path]], identity: dict[str, Any]) -> Iterator[tuple[str, Scorer]]:
    """Load each (name, checkpoint) adapter in turn into the scorer's base, dropping the one before, and yield
    (name, a scorer on the base with that adapter active). The last adapter is dropped at the end."""
    model, prev = scorer.model, None
    try:
        for name, ckpt in adapters:
            model = attach(model, ckpt, name, identity)
            if prev:
                detach(model, prev)
            prev = name
            yield name, scorer.with_model(model)
    finally:
        if prev:  # leave the caller's base model as it was
            detach(model, prev)


def benchmark_results(scorer: Scorer, pairs: Sequence[dict], conts: Sequence[dict]) -> tuple[list[Result], list[Result]]:
    """What the sweep scores per model: the pairs' requests and the passages' requests, one scorer call each."""
    return scorer.loglikelihood(pair_requests(pairs)), scorer.loglikelihood(continuation_requests(conts)) if conts else []


def score_benchmark(scorer: Scorer, pairs: Sequence[dict], conts: Sequence[dict],
                    merge: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair and continuation tables of the scorer's model (its active adapter merged while scoring, see
    :func:`merged`)."""
    with merged(scorer.model, merge):
        p, c = benchmark_results(scorer, pairs, conts)
    return pair_table(pairs, p), continuation_table(conts, c) if conts else pd.DataFrame()


def score_epochs(scorer: Scorer, pairs: Sequence[dict], conts: Sequence[dict], checkpoints: dict[int, Path],
                 epochs: Sequence[int], identity: dict[str, Any],
                 progress: Any = print) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pair scores and continuation scores for the base model and each requested epoch, plus timings."""
    missing = [e for e in epochs if e not in checkpoints]
    if missing:
        raise FileNotFoundError(f"no complete checkpoint for epoch(s) {missing}; have {sorted(checkpoints)}")
    pair_frames, cont_frames, times = [], [], []

    def one(label: str, epoch: int, s: Scorer) -> None:
        t0 = time.perf_counter()
        p, c = score_benchmark(s, pairs, conts)
        p, c = p.assign(model=label, epoch=epoch), c.assign(model=label, epoch=epoch)
        dt = time.perf_counter() - t0
        pair_frames.append(p)
        cont_frames.append(c)
        ntok = int(p[["n_tokens_good", "n_tokens_bad"]].sum().sum() * 2 + (c.n_tokens.sum() if len(c) else 0))
        times.append({"model": label, "epoch": epoch, "wall_s": dt, "scored_tokens": ntok})
        k = len(times) - 1
        progress(f"  base model scored in {dt:.1f} s" if epoch == 0 else f"  checkpoint {k}/{len(epochs)} ({label}) scored in {dt:.1f} s")

    one("base", 0, scorer)
    epoch_of = {f"epoch-{e}": e for e in epochs}
    for name, s in each_adapter(scorer, [(n, checkpoints[e]) for n, e in epoch_of.items()], identity):
        one(name, epoch_of[name], s)
    return pd.concat(pair_frames, ignore_index=True), pd.concat(cont_frames, ignore_index=True), pd.DataFrame(times)

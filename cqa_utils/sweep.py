"""§4.1 epoch sweep: score the base model and each epoch's LoRA adapter on the benchmark.

The base is loaded once; adapters are loaded into it one after another with peft and switched
(bit-exact against a fresh load, shared/notes/scoring.md §4), never merged, so every checkpoint
is scored in the same numerical mode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .scoring import score_continuations, score_pairs


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
    from peft import PeftModel

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


def run_sweep(model: Any, tokenizer: Any, prefix_id: int, pairs: Sequence[dict], conts: Sequence[dict],
              checkpoints: dict[int, Path], epochs: Sequence[int], identity: dict[str, Any],
              max_tokens: int = 4096, progress: Any = print) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pair scores and continuation scores for the base model and each requested epoch, plus timings."""
    missing = [e for e in epochs if e not in checkpoints]
    if missing:
        raise FileNotFoundError(f"no complete checkpoint for epoch(s) {missing}; have {sorted(checkpoints)}")
    pair_frames, cont_frames, times = [], [], []

    def one(label: str, epoch: int, m: Any) -> None:
        t0 = time.perf_counter()
        p = score_pairs(m, tokenizer, pairs, prefix_id, max_tokens).assign(model=label, epoch=epoch)
        c = score_continuations(m, tokenizer, conts, prefix_id, max_tokens).assign(model=label, epoch=epoch)
        dt = time.perf_counter() - t0
        pair_frames.append(p)
        cont_frames.append(c)
        ntok = int(p[["n_tokens_good", "n_tokens_bad"]].sum().sum() * 2 + c.n_tokens.sum())
        times.append({"model": label, "epoch": epoch, "wall_s": dt, "scored_tokens": ntok})
        progress(f"  scored {label}: {dt:.1f} s")

    one("base", 0, model)
    current, prev = model, None
    for e in epochs:
        name = f"epoch-{e}"
        current = attach(current, checkpoints[e], name, identity)
        if prev:
            detach(current, prev)
        one(name, e, current)
        prev = name
    if prev:  # leave the caller's base model as it was
        detach(current, prev)
    return pd.concat(pair_frames, ignore_index=True), pd.concat(cont_frames, ignore_index=True), pd.DataFrame(times)

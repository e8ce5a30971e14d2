"""Which device a run uses: CUDA when asked for and visible, else the CPU.

Kept apart from :mod:`cqa_utils.method.models` so that :mod:`cqa_utils.method.config` can resolve ``--device auto``,
and the cache keys can record the bf16/fp32 decision (:func:`precision`), without importing torch or the model
code (and without an import cycle).
"""

from __future__ import annotations

from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (no CUDA context is created)."""
    import torch  # deferred: torch takes seconds to import, and `cqa validate` never needs it

    return torch.cuda.is_available()


def resolve_device(requested: str) -> str:
    """"auto" → "cuda" when a CUDA GPU is visible, else "cpu"; "cpu" and "cuda" are returned as given."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"device {requested!r}: expected 'auto', 'cpu' or 'cuda'")
    return requested


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX); autocast is slow without it."""
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train_in_bf16(profile: Any) -> bool:
    """Whether training follows the paper's bf16 mixed precision here (``profile``: a config.Profile).

    Yes on CUDA; yes for bf16 weights (the paper profile); on a CPU for the SmolLM2 profile only where
    bf16 is native (emulated bf16 is slower than fp32). The smoke profile stays fp32 on a CPU."""
    if profile.hparams.mixed_precision != "bf16":
        return False
    if profile.device == "cuda" or profile.dtype == "bfloat16":
        return True
    return profile.model_kind == "gguf" and cpu_has_bf16()


def precision(profile: Any) -> dict[str, Any]:
    """The precision and device decision a step computes under: part of every step's cache key.

    A run directory moved between a machine with native bf16 and one without would otherwise mix precisions."""
    return {"device": profile.device, "weights": profile.dtype, "train_bf16": train_in_bf16(profile)}

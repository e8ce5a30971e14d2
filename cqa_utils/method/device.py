"""Which device a run uses: CUDA when asked for and visible, else the CPU.

Kept apart from :mod:`cqa_utils.method.models` so that :mod:`cqa_utils.method.config` can resolve ``--device auto``
without importing the model code (and without an import cycle).
"""

from __future__ import annotations

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

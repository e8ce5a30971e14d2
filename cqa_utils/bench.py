"""Speed benchmarks (``cqa bench``), separate from the tests: ratios against baselines measured in the same run.

Sections (``--only``):

* ``scoring``  our scorer vs a plain one-request-at-a-time transformers loop and vs
  lm-evaluation-harness ``HFLM.loglikelihood`` (optional ``bench`` extra) on the full benchmark's
  requests: tokens/s and the largest absolute log-prob difference.
* ``sweep``    seven adapters scored on one loaded base (load + switch) vs reloading the base per adapter.
* ``training`` tokens/s of the straightforward trl setup (its default loss path, gradient
  checkpointing on, fp32) vs ours, one epoch each on the same rows and seed, with both losses.
* ``e2e``      wall time per stage of the last ``cqa run`` of the profile (from its manifest).

Results go to ``bench/results/<host>-<date>.json`` and the book's Performance appendix.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import REPO_ROOT, DataPaths, get_profile
from .data import load
from .run import hardware

RESULTS = REPO_ROOT / "bench" / "results"


def benchmark_requests(data: DataPaths) -> list[tuple[str, str, bool]]:
    """Every request the sweep scores for one model, in its order: per pair good|y, good, bad|y, bad; then passages.

    Each is (context, continuation, conditional); an unconditional request scores the continuation exactly as
    it is scored after its context (leading space included), after the prefix token alone.
    """
    reqs: list[tuple[str, str, bool]] = []
    for r in load(data.pairs, "pairs").rows:
        for opt in ("good", "bad"):
            reqs += [(r["context"], r[opt], True), (r["context"], r[opt], False)]
    reqs += [(r["context"], r["passage"], True) for r in load(data.continuations, "continuations").rows]
    return reqs


def plain_loop(model: Any, enc: list[Any]) -> list[np.ndarray]:
    """Baseline: one request at a time, full forward, full-vocabulary log-softmax."""
    out = []
    with torch.inference_mode():
        for e in enc:
            ids = torch.tensor([e.ctx + e.cont[:-1]])
            lp = torch.log_softmax(model(ids, use_cache=False).logits[0].float(), -1)
            pos = torch.arange(len(e.ctx) - 1, len(e.ctx) - 1 + len(e.cont))
            out.append(lp[pos, torch.tensor(e.cont)].double().numpy())
    return out


def lm_eval_loglikelihood(model: Any, tok: Any, reqs: list[tuple[str, str, bool]], prefix_id: int,
                          batch_size: int) -> list[float] | None:
    """lm-evaluation-harness's HFLM.loglikelihood on the same requests (None when lm-eval is not installed).

    A conditional request is given as (P_text + context, " " + continuation) and an unconditional one as
    ("", continuation with its leading space) with ``prefix_token_id=P``, so both tools score the same tokens.
    """
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None
    from .scoring import split_boundary

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, prefix_token_id=prefix_id, max_length=8192)
    ptxt = tok.convert_ids_to_tokens(prefix_id)
    inst = []
    for i, (c, x, cond) in enumerate(reqs):
        y, xs = split_boundary(c, x)
        args = (ptxt + y, xs) if cond else ("", xs)
        inst.append(Instance(request_type="loglikelihood", doc={}, arguments=args, idx=i))
    return [ll for ll, _ in lm.loglikelihood(inst, disable_tqdm=True)]


def bench_scoring(profile: str, data: DataPaths, repeats: int = 1) -> list[dict[str, Any]]:
    """Our scorer vs the plain loop vs lm-eval on the same requests and model."""
    from .models import load_model, load_tokenizer, prefix_token_id
    from .scoring import encode, encode_unconditional, model_window, score_encoded, score_pairs

    prof = get_profile(profile)
    tok, model = load_tokenizer(prof), load_model(prof)
    pid = prefix_token_id(tok)
    reqs = benchmark_requests(data)
    win = model_window(model, tok)
    enc = [(encode if cond else encode_unconditional)(tok, c, x, pid, win) for c, x, cond in reqs]
    fed = sum(len(e.ctx) + len(e.cont) - 1 for e in enc)
    rows = []

    def timed(fn):
        best, res = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = fn()
            best = min(best, time.perf_counter() - t0)
        return best, res

    t_plain, ref = timed(lambda: plain_loop(model, enc))
    ref_tot = np.array([r.sum() for r in ref])
    t_ours, ours = timed(lambda: score_encoded(model, enc, prof.score_batch_tokens, pad_id=pid))
    rows.append({"scorer": "plain loop (bs 1, full log-softmax)", "wall_s": t_plain, "tokens_per_s": fed / t_plain,
                 "speedup_vs_lm_eval": None, "max_abs_diff_vs_plain_nats": 0.0})
    rows.append({"scorer": "cqa score_encoded (length-sorted batches, head on needed rows)", "wall_s": t_ours,
                 "tokens_per_s": fed / t_ours, "speedup_vs_lm_eval": None,
                 "max_abs_diff_vs_plain_nats": float(np.abs(np.array([s.total for s in ours]) - ref_tot).max())})
    pairs = load(data.pairs, "pairs").rows
    conts = load(data.continuations, "continuations").rows
    from .scoring import score_continuations

    t_shared, (sp, _) = timed(lambda: (score_pairs(model, tok, pairs, pid, prof.score_batch_tokens),
                                       score_continuations(model, tok, conts, pid, prof.score_batch_tokens)))
    ours_pairs = np.ravel(sp[["logp_cond_good", "logp_uncond_good", "logp_cond_bad", "logp_uncond_bad"]].to_numpy())
    rows.append({"scorer": "cqa score_pairs + score_continuations (what the sweep runs)", "wall_s": t_shared,
                 "tokens_per_s": fed / t_shared, "speedup_vs_lm_eval": None,
                 "max_abs_diff_vs_plain_nats": float(np.abs(ours_pairs - ref_tot[: len(ours_pairs)]).max())})
    t_lm, lm = timed(lambda: lm_eval_loglikelihood(model, tok, reqs, pid, batch_size=8))
    if lm is not None:
        lm = np.array(lm)
        rows.append({"scorer": "lm-evaluation-harness HFLM.loglikelihood (batch 8)", "wall_s": t_lm, "tokens_per_s": fed / t_lm,
                     "speedup_vs_lm_eval": 1.0, "max_abs_diff_vs_plain_nats": float(np.abs(lm - ref_tot).max())})
        for r in rows[:-1]:
            r["speedup_vs_lm_eval"] = t_lm / r["wall_s"]
        rows.append({"scorer": "agreement: cqa vs lm-eval", "wall_s": None, "tokens_per_s": None, "speedup_vs_lm_eval": None,
                     "max_abs_diff_vs_plain_nats": float(np.abs(np.array([s.total for s in ours]) - lm).max())})
    for r in rows:
        r |= {"requests": len(reqs), "tokens_fed": fed}
    return rows


def _fake_adapters(profile: str, n: int, dest: Path) -> list[Path]:
    """n LoRA adapters with random weights (for timing the sweep without a trained run)."""
    from peft import get_peft_model

    from .models import load_model, model_identity
    from .train import COMPLETE_MARKER, lora_config, save_adapter_identity

    prof = get_profile(profile)
    out = []
    for k in range(n):
        torch.manual_seed(k)
        m = get_peft_model(load_model(prof), lora_config(prof.hparams))
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.01)
        d = dest / f"checkpoint-{k + 1}"
        m.save_pretrained(d)
        save_adapter_identity(d, model_identity(m.get_base_model()), prof.name)
        (d / COMPLETE_MARKER).write_text(json.dumps({"epoch": k + 1}))
        out.append(d)
    return out


def bench_sweep(profile: str, data: DataPaths, run_dir: Path | None) -> list[dict[str, Any]]:
    """Seven adapters on one loaded base (switching) vs reloading the base for each."""
    from .models import load_model, load_tokenizer, model_identity, prefix_token_id
    from .sweep import attach, detach
    from .train import complete_checkpoints

    prof = get_profile(profile)
    tok = load_tokenizer(prof)
    pid = prefix_token_id(tok)
    pairs = load(data.pairs, "pairs").rows[:8]
    ck = complete_checkpoints(run_dir / "checkpoints") if run_dir and (run_dir / "checkpoints").exists() else {}
    tmp = None
    if len(ck) >= 7:
        paths, source = [ck[e] for e in sorted(ck)[:7]], f"trained checkpoints in {run_dir}"
    else:
        tmp = Path(tempfile.mkdtemp())
        paths, source = _fake_adapters(profile, 7, tmp), "random adapters (no trained run found)"
    from .scoring import score_pairs

    t0 = time.perf_counter()
    base = load_model(prof)
    m, prev, switched = base, None, []
    ident = model_identity(base)
    for i, p in enumerate(paths):
        m = attach(m, p, f"a{i}", ident)
        if prev:
            detach(m, prev)
        switched.append(score_pairs(m, tok, pairs, pid).dI.to_numpy())
        prev = f"a{i}"
    t_switch = time.perf_counter() - t0
    t0 = time.perf_counter()
    reloaded = []
    for p in paths:
        mm = attach(load_model(prof), p, "a", ident)
        reloaded.append(score_pairs(mm, tok, pairs, pid).dI.to_numpy())
    t_reload = time.perf_counter() - t0
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    diff = float(max(np.abs(a - b).max() for a, b in zip(switched, reloaded)))
    return [{"mode": "reload base per adapter", "wall_s": t_reload, "speedup": 1.0, "adapters": len(paths), "source": source},
            {"mode": "one base, load + switch adapters", "wall_s": t_switch, "speedup": t_reload / t_switch,
             "adapters": len(paths), "source": source, "max_abs_diff_dI_nats": diff}]


def bench_training(profile: str, data: DataPaths, n_rows: int) -> list[dict[str, Any]]:
    """One epoch on the first n_rows (same seed) with trl's straightforward setup and with ours."""
    from .models import load_model, load_tokenizer
    from .train import build_example, train, uses_bf16

    prof = get_profile(profile).with_overrides(num_train_epochs=1)
    tok = load_tokenizer(prof)
    rows = load(data.train, "train").rows
    tr, va = rows[:n_rows], rows[n_rows:n_rows + 4]
    ntok = sum(len(build_example(tok, r, prof.hparams.template, prof.hparams.cutoff_len)["input_ids"]) for r in tr)
    out = []
    for label, fast, prof_i in (("straightforward trl (default loss path, gradient checkpointing, fp32)", False,
                                 prof.with_overrides(mixed_precision="no")),
                                ("ours, fp32 (label-position LM head, no checkpointing)", True, prof.with_overrides(mixed_precision="no")),
                                ("ours, as run (bf16 autocast where the CPU has it)" if uses_bf16(prof) else "ours, as run", True, prof)):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            s = train(prof_i, load_model(prof_i), tok, tr, va, Path(d), resume=False, fast=fast, progress=lambda *_: None)
            wall = time.perf_counter() - t0
        e = s["epochs"][0]
        out.append({"setup": label, "wall_s": wall, "train_tokens_per_s": ntok / wall, "train_loss": e["train_loss"],
                    "eval_loss": e["eval_loss"], "rows": len(tr)})
    for r in out:
        r["speedup"] = r["train_tokens_per_s"] / out[0]["train_tokens_per_s"]
        r["train_loss_rel_diff"] = abs(r["train_loss"] - out[0]["train_loss"]) / out[0]["train_loss"]
        r["eval_loss_rel_diff"] = abs(r["eval_loss"] - out[0]["eval_loss"]) / out[0]["eval_loss"]
    return out


def bench_e2e(profile: str, run_dir: Path) -> list[dict[str, Any]]:
    """Wall time per notebook of the last run (its manifest)."""
    m = run_dir / "manifest.json"
    if not m.exists():
        return []
    man = json.loads(m.read_text())
    rows = [{"stage": s["notebook"], "wall_s": s["wall_s"]} for s in man["notebooks"]]
    rows.append({"stage": "total (cqa run)", "wall_s": man["total_wall_s"]})
    return rows


def main(args: Any) -> int:
    """Run the selected sections and write the results file."""
    only = set(args.only or ["scoring", "sweep", "training", "e2e"])
    data = DataPaths()
    run_dir = REPO_ROOT / "runs" / args.profile
    res: dict[str, Any] = {"profile": args.profile, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": hardware(),
                           "host": socket.gethostname(), "sections": {}}
    torch.manual_seed(0)
    if "scoring" in only:
        res["sections"]["Scoring (full benchmark requests)"] = bench_scoring(args.profile, data)
        print(json.dumps(res["sections"]["Scoring (full benchmark requests)"], indent=1))
    if "sweep" in only:
        res["sections"]["Epoch sweep: adapter switching vs reloading"] = bench_sweep(args.profile, data, run_dir)
        print(json.dumps(res["sections"]["Epoch sweep: adapter switching vs reloading"], indent=1))
    if "training" in only:
        res["sections"]["Training (one epoch, same rows and seed)"] = bench_training(args.profile, data, args.train_steps)
        print(json.dumps(res["sections"]["Training (one epoch, same rows and seed)"], indent=1))
    if "e2e" in only:
        res["sections"]["End to end (last cqa run)"] = bench_e2e(args.profile, run_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{platform.node() or 'host'}-{time.strftime('%Y%m%d-%H%M')}.json"
    from .artifacts import write_json

    write_json(out, res)
    print(f"wrote {out}")
    return 0

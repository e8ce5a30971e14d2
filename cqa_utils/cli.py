"""Command line: ``cqa run | book | reference | validate | score | bench`` (also ``python -m cqa_utils``).

Each subcommand imports the modules it needs when it runs (deliberately deferred): ``cqa validate`` and
``cqa --help`` answer in a fraction of a second instead of importing torch and transformers first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cqa_utils.method.config import DEVICE_ENV, DEVICES, PROFILES, REPO_ROOT
from cqa_utils.method.data import DataError
from cqa_utils.pipeline.artifacts import RunDirError


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"parameter {it!r}: expected NAME=VALUE (VALUE as JSON, or a plain string)")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def cmd_run(a: argparse.Namespace) -> int:
    from cqa_utils.method.config import REPO_ROOT
    from cqa_utils.pipeline.run import run_pipeline

    t0 = time.perf_counter()
    m = run_pipeline(a.profile, a.run_dir, a.data_dir, _params(a.param), a.only, book_root=None if a.no_publish else REPO_ROOT,
                     device=a.device, model=a.model, dry_run=a.dry_run)
    if a.dry_run:
        return 0
    print(f"pipeline finished in {time.perf_counter() - t0:.0f} s; manifest: {Path(m['run_dir']) / 'manifest.json'}")
    for s in m["notebooks"]:
        print(f"  {s['notebook']:18s} {s['wall_s']:8.1f} s")
    return 0


def cmd_book(a: argparse.Namespace) -> int:
    from cqa_utils.report.book import build

    t0 = time.perf_counter()
    build(strict=not a.no_strict, reference=a.reference)
    print(f"book built in {time.perf_counter() - t0:.0f} s")
    return 0


def cmd_reference(a: argparse.Namespace) -> int:
    from cqa_utils.pipeline.reference import REFERENCE_DIR, make_reference

    rec = make_reference(Path(a.run_dir))
    print(f"reference run written to {REFERENCE_DIR} ({rec['bytes'] / 2**20:.2f} MiB, commit {rec['commit']}); "
          "commit it to ship it with the book")
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from cqa_utils.method.data import load

    for f in a.files:
        rec = load(f, a.kind)
        print(f"{f}: OK ({len(rec)} records)")
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    import pandas as pd

    from cqa_utils.method.config import get_profile
    from cqa_utils.method.data import load
    from cqa_utils.method.models import model_identity
    from cqa_utils.method.scoring import Scorer
    from cqa_utils.method.stats import unit_factor
    from cqa_utils.method.sweep import attach

    if not (a.pairs or a.continuations):
        raise ValueError("give --pairs FILE and/or --continuations FILE")
    prof = get_profile(a.profile, a.device, a.model)
    files = [(a.pairs, "pairs"), (a.continuations, "continuations")]
    recs = {kind: load(f, kind).rows for f, kind in files if f}  # validate before loading any model
    scorer = Scorer.for_profile(prof)
    if a.adapter:
        scorer = scorer.with_model(attach(scorer.model, Path(a.adapter), "scored", model_identity(scorer.model)))
    pid = scorer.prefix_id
    f = unit_factor(a.unit)
    frames = []
    if "pairs" in recs:
        df = scorer.pairs(recs["pairs"])
        for c in ("logp_cond_good", "logp_uncond_good", "logp_cond_bad", "logp_uncond_bad", "I_good", "I_bad", "dI"):
            df[f"{c}_{a.unit}"] = df[c] * f
        frames.append(df.assign(kind="pair"))
    if "continuations" in recs:
        df = scorer.continuations(recs["continuations"])
        df[f"logp_per_token_{a.unit}"] = df.logp_per_token * f
        frames.append(df.assign(kind="continuation"))
    out = pd.concat(frames, ignore_index=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(a.out, index=False)
    print(f"wrote {len(out)} rows to {a.out} (log-prob columns in nats; *_{a.unit} columns in {a.unit}; prefix token id {pid})")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    # the benchmarks are a tool of the repository, not part of the package: bench/bench.py beside it
    path = REPO_ROOT / "bench" / "bench.py"
    if not path.exists():
        raise FileNotFoundError(f"{path.relative_to(REPO_ROOT)} is missing: `cqa bench` runs from a checkout of the repository")
    spec = importlib.util.spec_from_file_location("cqa_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench_main = bench.main

    if a.device:
        os.environ[DEVICE_ENV] = a.device  # bench resolves its profile with get_profile, which reads it
    return bench_main(a)


def add_device(p: argparse.ArgumentParser, model: bool = True) -> None:
    """--device (and --model) for a subcommand that loads a profile's model."""
    p.add_argument("--device", choices=DEVICES, default=None,
                   help="auto: CUDA when a GPU is visible. Default: the profile's own (cpu: auto, smoke: cpu, paper: cuda)")
    if model:
        p.add_argument("--model", default=None, help="paper profile only: a hub id or a local folder in Hugging Face "
                                                     "format in place of Qwen/Qwen2.5-7B (e.g. a pre-downloaded copy)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cqa", description="CQA replication: pipeline, book, validation, scoring")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks 01-10 with papermill into a run directory")
    r.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    r.add_argument("--run-dir", default=None, help="default: runs/<profile>")
    r.add_argument("--data-dir", default=None, help="a folder with train.jsonl and benchmark/{pairs,continuations}.jsonl")
    r.add_argument("-p", "--param", action="append", default=[], help="notebook parameter NAME=VALUE (repeatable)")
    r.add_argument("--only", nargs="*", help="run only these notebooks (e.g. 05_delta_delta_i)")
    r.add_argument("--no-publish", action="store_true", help="do not copy the executed notebooks to book/run")
    r.add_argument("--dry-run", action="store_true",
                   help="run the preflight and print which stages would run or be reused, with their last times; write nothing")
    add_device(r)
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("book", help="build the HTML book from the latest run (no re-execution)")
    b.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    b.add_argument("--reference", action="store_true",
                   help="build from the reference run shipped in reference_run/cpu (the default when no run was published)")
    b.set_defaults(func=cmd_book)
    rf = sub.add_parser("reference", help="ship a finished run as the reference run (reference_run/cpu, no checkpoints)")
    rf.add_argument("--run-dir", default="runs/cpu")
    rf.set_defaults(func=cmd_reference)
    v = sub.add_parser("validate", help="validate data files")
    v.add_argument("files", nargs="+")
    v.add_argument("--kind", choices=["train", "pairs", "continuations"], default=None)
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("score", help="score a benchmark file with a profile's model (and an adapter)")
    s.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    s.add_argument("--pairs")
    s.add_argument("--continuations")
    s.add_argument("--adapter", help="a LoRA checkpoint directory")
    s.add_argument("--unit", default="bits", choices=["bits", "nats"])
    s.add_argument("--out", required=True)
    add_device(s)
    s.set_defaults(func=cmd_score)
    be = sub.add_parser("bench", help="speed benchmarks (separate from the tests)")
    be.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    be.add_argument("--only", nargs="*", default=None, help="sections: scoring sweep training")
    be.add_argument("--train-rows", type=int, default=16, help="training rows for the training comparison")
    be.add_argument("--train-epochs", type=int, default=3, help="epochs for the training comparison (per-epoch losses)")
    add_device(be, model=False)
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return a.func(a)
    except (DataError, RunDirError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"cqa {a.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

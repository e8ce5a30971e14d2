"""The reference run shipped with the repository, so a reader can read the book without computing anything.

``cqa reference --run-dir runs/cpu`` copies one finished run into ``reference_run/cpu/``: the executed
notebooks, every artifact table, the manifest and each step's small outputs (losses, raw scores,
records), but no checkpoint, within :data:`MAX_BYTES`. ``cqa book`` builds from it when this checkout
has no run of its own; every page then says it shows the reference run, from which commit, machine
and date, and which files of the code have changed since.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat

from cqa_utils.method.config import REPO_ROOT
from cqa_utils.pipeline.artifacts import write_json

REFERENCE_DIR = REPO_ROOT / "reference_run" / "cpu"
#: 8 MiB: the whole design has 33 steps (seeds, held-out controls in folds, the scale sweep), and each step
#: record keeps its arguments (the training rows) so that `cqa run --dry-run` can name what changed; the
#: reference run at the final code of the controls and scale issues takes 5.9 MiB, 3.7 of it step records.
MAX_BYTES = 8 * 2**20
STEP_FILES = ("_step.json", "cqa_key.json", "epochs.csv", "summary.json", "timings.csv", "ranking.parquet",
              "pair_scores.parquet", "continuation_scores.parquet")
RECORD = "REFERENCE.json"
#: What a change since the reference commit can alter in its pages.
WATCHED = ("cqa_utils", "notebooks", "data", "_toc.yml", "book")


def make_reference(run_dir: Path, dest: Path = REFERENCE_DIR) -> dict[str, Any]:
    """Copy the shippable part of a finished run to ``dest`` (replacing it); returns the record written there."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copytree(run_dir / "executed", tmp / "executed")
    shutil.copytree(run_dir / "artifacts", tmp / "artifacts")
    for f in ("manifest.json", "run.json"):
        shutil.copy2(run_dir / f, tmp / f)
    for step in sorted((run_dir / "steps").iterdir()):
        if not step.is_dir() or ".stale-" in step.name:
            continue
        for f in STEP_FILES:
            if (step / f).exists():
                (tmp / "steps" / step.name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(step / f, tmp / "steps" / step.name / f)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        shutil.rmtree(tmp)
        raise ValueError(f"the reference run would take {size / 2**20:.1f} MiB (limit {MAX_BYTES / 2**20:.0f} MiB); nothing was changed")
    rec = {"commit": manifest["git"].get("commit"), "dirty": manifest["git"].get("dirty"), "finished": manifest["finished"],
           "profile": manifest["profile"], "model": manifest["model"], "hardware": manifest["hardware"],
           "total_wall_s": manifest["total_wall_s"], "notebooks": manifest["notebooks"], "steps": manifest.get("steps", []),
           "bytes": size,
           "made": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(tmp / RECORD, rec)
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)
    return rec


def changed_since(commit: str | None, repo: Path = REPO_ROOT) -> list[str] | None:
    """Files under :data:`WATCHED` that differ between ``commit`` and the working tree (None: unknown)."""
    if not commit:
        return None
    try:
        out = subprocess.run(["git", "diff", "--name-only", commit, "--", *WATCHED], cwd=repo, capture_output=True,
                             text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return [ln for ln in out.splitlines() if ln]


def banner(ref_dir: Path = REFERENCE_DIR, repo: Path = REPO_ROOT) -> str:
    """A MyST admonition for every page built from the reference run."""
    rec = json.loads((Path(ref_dir) / RECORD).read_text())
    hw = rec["hardware"]
    changed = changed_since(rec["commit"], repo)
    steps = rec.get("steps", [])
    computed = sum(s["wall_s"] for s in steps)
    times = ", ".join(f"{s['step']} {s['wall_s'] / 60:.1f} min" for s in steps)
    if changed is None:
        since = "Whether the code changed since cannot be told here (no git history)."
    elif not changed:
        since = "The code, notebooks and data are unchanged since that commit."
    else:
        shown = ", ".join(f"`{c}`" for c in changed[:12]) + (f" and {len(changed) - 12} more" if len(changed) > 12 else "")
        since = f"Changed since that commit ({len(changed)} files): {shown}; re-run (`make all`) to see their effect."
    return (":::{note}\n**Reference run.** This page shows the run shipped with the repository (`reference_run/cpu`), not "
            f"one computed on this machine: commit `{(rec['commit'] or '?')[:10]}`{' (with uncommitted changes)' if rec['dirty'] else ''}, "
            f"profile `{rec['profile']}` ({rec['model']}), {hw.get('cpu', '?')} with {hw.get('cpu_count', '?')} cores"
            f"{', GPU ' + hw['cuda'] if hw.get('cuda') else ''}, finished {rec['finished']}. Its expensive steps took "
            f"{computed / 60:.0f} min when computed ({times}); the notebooks' last execution took {rec['total_wall_s']:.0f} s. "
            f"{since}\n:::\n")


def label_notebooks(book_run: Path, text: str) -> None:
    """Put ``text`` as a first Markdown cell into every executed notebook in ``book_run``."""
    for p in sorted(Path(book_run).glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))
        nbformat.write(nb, p)

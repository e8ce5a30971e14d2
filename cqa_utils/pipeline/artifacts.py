"""The run directory: atomic artifact files, content-hashed stage keys, a lock, a version stamp.

Layout of ``runs/<profile>/``::

    run.json                 who wrote this directory (code version, profile)
    steps/<step>/...         each expensive step's outputs (a training run's checkpoints, a sweep's raw
                             scores) plus ``cqa_key.json`` (its key) and ``_step.json`` (done, wall time)
    artifacts/<notebook>/... tables and facts each notebook computes (always recomputed, cheap)
    executed/                the executed notebooks
    manifest.json            versions, hardware, seeds, wall time per notebook and step

Every file is written to a temporary name in the same directory and renamed, so a crash never
leaves a half-written artifact that a later stage would read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cqa_utils import __version__
from cqa_utils.method.config import REPO_ROOT

RUN_FORMAT = 2  # 2: expensive steps under steps/, keyed by keys.step_key


#: Notebooks renamed since older runs were made (new name -> old name): a shipped run made before the rename
#: is still shown under the new name.
RENAMED = {"10_claims": "09_claims"}


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (other version, missing stage, locked)."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path`` (same directory, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def repo_relative(path: Any) -> str:
    """``path`` as written into a run's records: relative to the repository when inside it, else as given.

    Manifests and records are shipped (``reference_run/``) and read on other machines: a path of the
    machine that made them means nothing there.
    """
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO_ROOT)) if p.is_absolute() else str(p)
    except ValueError:
        return str(p)


def write_json(path: Path, obj: Any) -> Path:
    """Atomically write JSON (sorted keys, NaN allowed)."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable)))


def write_table(path: Path, df: pd.DataFrame) -> Path:
    """Atomically write a DataFrame as parquet or CSV (by suffix)."""
    if path.suffix == ".parquet":
        return atomic_write(path, lambda p: df.to_parquet(p, index=False))
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def copy_tree_atomic(src: Path, dest: Path) -> None:
    """Replace ``dest`` by a copy of ``src`` via a temporary sibling and a rename."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


class Run:
    """One run directory; create it or open it, refusing one written by another code version."""

    def __init__(self, run_dir: str | Path, profile: str, create: bool = True):
        self.dir = Path(run_dir).resolve()
        self.profile = profile
        stamp = self.dir / "run.json"
        if stamp.exists():
            info = json.loads(stamp.read_text())
            if info.get("format") != RUN_FORMAT or info.get("code_version") != __version__:
                raise RunDirError(f"{self.dir}: written by cqa_utils {info.get('code_version')} (format {info.get('format')}); "
                                  f"this is {__version__} (format {RUN_FORMAT}). Use a new --run-dir; nothing was changed.")
            if info.get("profile") != profile:
                raise RunDirError(f"{self.dir}: holds a {info.get('profile')!r} run, not {profile!r}; use another run directory")
        elif create:
            write_json(stamp, {"format": RUN_FORMAT, "code_version": __version__, "profile": profile,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        else:
            raise RunDirError(f"{self.dir}: not a run directory (no run.json); run `cqa run` first")

    # -- paths and files
    def stage_dir(self, stage: str) -> Path:
        d = self.dir / "artifacts" / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def step_dir(self, step: str) -> Path:
        """Where a cached step (see :mod:`cqa_utils.pipeline.cache`) keeps its outputs."""
        return self.dir / "steps" / step

    def path(self, stage: str, name: str) -> Path:
        return self.stage_dir(stage) / name

    def save(self, stage: str, name: str, obj: Any) -> Path:
        """Write a DataFrame (.parquet/.csv) or JSON-able object (.json) atomically."""
        p = self.path(stage, name)
        return write_table(p, obj) if isinstance(obj, pd.DataFrame) else write_json(p, obj)

    def load(self, stage: str, name: str) -> Any:
        """Read an artifact written by notebook ``stage``; a clear error says which notebook to run first."""
        p = self.dir / "artifacts" / stage / name
        if not p.exists():
            raise RunDirError(f"{p} is missing: run notebook {stage} (or `cqa run`) first")
        return read_any(p)


def read_any(p: Path) -> Any:
    """A parquet/CSV file as a DataFrame, anything else as JSON."""
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix == ".csv":
        return pd.read_csv(p)
    return json.loads(p.read_text())


class RunLock:
    """An exclusive lock file in the run directory: a second run into it at once is refused."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = self.path.read_text().strip() if self.path.exists() else "?"
            pid = int(other.split()[0]) if other.split() and other.split()[0].isdigit() else None
            if pid and not _alive(pid):
                self.path.unlink(missing_ok=True)  # left by a killed run: take it over
                return self.__enter__()
            raise RunDirError(f"{self.path.parent} is in use by another run (pid {other}); wait for it or use another --run-dir") from None
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}".encode())
        os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

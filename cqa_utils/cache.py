"""Expensive steps as one cached call each: training a LoRA adapter, scoring checkpoints, the prescreen.

``run_step(run, "train-cot", train_adapter, profile=prof, train_rows=tr, ...)`` calls
``train_adapter(out_dir, progress=..., **args)`` unless the step already finished in this run
directory with the same key (see :mod:`cqa_utils.keys`: the function's module import closure and
the canonical arguments). Its outputs live in ``run_dir/steps/<step>/``:

- ``cqa_key.json`` is written *before* the step starts, so an interrupted step resumes into the
  same folder (training continues from its last complete epoch checkpoint);
- ``_step.json`` is written *after* it finishes (key, wall time, whether it was reused).

A folder holding another key's outputs is renamed aside (``<step>.stale-<time>``), never deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .artifacts import Run, read_any, write_json
from .config import Profile
from .keys import KEY_FILE, canonical, step_key

STEP_RECORD = "_step.json"


def model_provenance(profile: Profile) -> dict[str, Any]:
    """What identifies a profile's weights beyond its name: the version of the package shipping them."""
    if profile.gguf_package:
        try:
            return {"package": profile.gguf_package, "version": metadata.version(profile.gguf_package.replace("_", "-"))}
        except metadata.PackageNotFoundError:
            return {"package": profile.gguf_package, "version": None}
    return {"model_id": profile.model_id}


def _key_args(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as keyed, plus the weights' provenance for every profile among them."""
    out = dict(args)
    for k, v in args.items():
        if isinstance(v, Profile):
            out[f"{k}:weights"] = model_provenance(v)
    return out


def step_record(run: Run, step: str) -> dict[str, Any] | None:
    """The completion record of ``step`` in ``run`` (None if it never finished)."""
    p = run.step_dir(step) / STEP_RECORD
    return json.loads(p.read_text()) if p.exists() else None


def run_step(run: Run, step: str, fn: Callable[..., None], progress: Callable[[str], None] = print, owner: str = "",
             **args: Any) -> Path:
    """Run ``fn(out_dir, progress=progress, **args)`` once per key; returns ``out_dir``.

    ``owner`` (the calling notebook) is recorded so that ``cqa run --dry-run`` can say which steps a notebook runs.
    """
    module = fn.__module__.rsplit(".", 1)[-1]
    keyed = _key_args(args)
    key = step_key(module, keyed)
    out = run.step_dir(step)
    rec = step_record(run, step)
    if rec and rec.get("key") == key:
        progress(f"{step}: inputs unchanged (key {key[:12]}), reusing {out.relative_to(run.dir)}")
        write_json(out / STEP_RECORD, rec | {"reused": True, "notebook": owner or rec.get("notebook", "")})
        return out
    key_file = out / KEY_FILE
    if out.exists() and any(out.iterdir()) and (not key_file.exists() or json.loads(key_file.read_text()) != key):
        aside = out.with_name(f"{step}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        progress(f"{step}: inputs changed; kept the previous outputs as {aside.name} (nothing deleted)")
    out.mkdir(parents=True, exist_ok=True)
    (out / STEP_RECORD).unlink(missing_ok=True)
    write_json(key_file, key)
    t0 = time.perf_counter()
    fn(out, progress=progress, **args)
    write_json(out / STEP_RECORD, {"key": key, "function": f"{fn.__module__}.{fn.__name__}", "notebook": owner,
                                   "wall_s": time.perf_counter() - t0,
                                   "reused": False, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "args": json.loads(json.dumps(canonical(keyed)))})
    return out


def load_output(out: Path, name: str) -> Any:
    """Read one output file of a step (parquet/CSV as a DataFrame, else JSON)."""
    p = Path(out) / name
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: the step that writes it did not finish")
    return read_any(p)


def step_table(run_dir: Path) -> list[dict[str, Any]]:
    """Every step's record (reused or computed, wall time) for the manifest and the book."""
    out = []
    for p in sorted((Path(run_dir) / "steps").glob(f"*/{STEP_RECORD}")):
        if ".stale-" in p.parent.name:
            continue
        rec = json.loads(p.read_text())
        out.append({"step": p.parent.name, "notebook": rec.get("notebook", ""), "function": rec.get("function", ""),
                    "reused": rec.get("reused"),
                    "wall_s": rec.get("wall_s"), "key": rec.get("key", "")[:12], "finished": rec.get("finished")})
    return out

"""Expensive steps as one cached call each: training a LoRA adapter, scoring checkpoints, the prescreen.

``run_step(run, "train-cot", train_adapter, profile=prof, train_rows=tr, ...)`` calls
``train_adapter(out_dir, progress=..., **args)`` unless the step already finished in this run
directory with the same key. The key (see :mod:`cqa_utils.pipeline.keys`) hashes its components: the function's
code (normalised syntax trees of its import closure), the installed versions of the packages that code imports,
the canonical arguments, and for each profile among the arguments the weights it loads (by content, see
:mod:`cqa_utils.pipeline.weights`), its precision and device decision and the ``hparams`` set for this run.
Its outputs live in ``run_dir/steps/<step>/``:

- ``cqa_key.json`` is written *before* the step starts, so an interrupted step resumes into the
  same folder (training continues from its last complete epoch checkpoint);
- ``_step.json`` is written *after* it finishes (key, its components, wall time, whether it was reused).

A folder holding another key's outputs is renamed aside (``<step>.stale-<time>``), never deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cqa_utils.method.config import Profile
from cqa_utils.method.device import precision
from cqa_utils.pipeline import weights
from cqa_utils.pipeline.artifacts import Run, read_any, write_json
from cqa_utils.pipeline.keys import (
    KEY_FILE,
    KEY_SCHEME,
    PACKAGE,
    PACKAGE_DIR,
    canonical,
    closure_imports,
    code_components,
    code_hashes,
    key_from,
    package_versions,
)

STEP_RECORD = "_step.json"


def refresh_model(profile: Profile) -> str | None:
    """Drop the profile's converted model copy if its source or converter changed (why; None if kept)."""
    return weights.refresh(profile)


def profile_components(args: dict[str, Any], build: bool = True) -> dict[str, Any]:
    """For each profile among the arguments: the weights it loads, its precision/device, its run hparams."""
    profs = {k: v for k, v in sorted(args.items()) if isinstance(v, Profile)}
    return json.loads(json.dumps({"weights": {k: weights.identity(v, build=build) for k, v in profs.items()},
                                  "precision": {k: precision(v) for k, v in profs.items()},
                                  "hparams": {k: dict(v.run_hparams) for k, v in profs.items()}}))


def key_components(fn: Callable[..., Any], args: dict[str, Any], root: Path = PACKAGE_DIR) -> dict[str, Any]:
    """Every component of a step's key (see the module docstring)."""
    return json.loads(json.dumps(code_components(fn, args, root) | profile_components(args)))  # as it is stored


def current_components(rec: dict[str, Any], profile: Profile, root: Path = PACKAGE_DIR) -> tuple[dict[str, Any], list[str]]:
    """The components of a finished step's key as they would be now, as far as they are known without running its
    notebook: code and packages (for a function of the package), and weights, precision and run hparams with
    ``profile`` in place of each profile argument. Also what is left to the notebook (a list of notes)."""
    comp = rec.get("components") or {}
    now: dict[str, Any] = {"scheme": KEY_SCHEME}
    notes = ["the arguments (data rows, upstream steps' outputs) are checked when the notebook runs"]
    module = comp.get("module", "")
    if module == PACKAGE or module.startswith(PACKAGE + "."):
        mods = [module.removeprefix(PACKAGE).lstrip(".") or "__init__"]
        now["code"], now["packages"] = code_hashes(mods, root), package_versions(closure_imports(mods, root))
    else:
        notes.append(f"its code ({comp.get('function', 'a function outside the package')}) is checked when the notebook runs")
    args = {k: profile for k in comp.get("precision", {})}
    now |= profile_components(args, build=False)
    for k, w in now["weights"].items():
        if "pending" in w:
            now["weights"][k] = comp.get("weights", {}).get(k)
            notes.append(f"{w['pending']}; its weights are hashed when the notebook runs")
    return json.loads(json.dumps(now)), notes


def step_record(run: Run, step: str) -> dict[str, Any] | None:
    """The completion record of ``step`` in ``run`` (None if it never finished)."""
    p = run.step_dir(step) / STEP_RECORD
    return json.loads(p.read_text()) if p.exists() else None


def run_step(run: Run, step: str, fn: Callable[..., None], progress: Callable[[str], None] = print, owner: str = "",
             extras: dict[str, Any] | None = None, **args: Any) -> Path:
    """Run ``fn(out_dir, progress=progress, **args, **extras)`` once per key; returns ``out_dir``.

    ``owner`` (the calling notebook) is recorded so that ``cqa run --dry-run`` can say which steps a notebook runs.
    ``extras`` are passed to ``fn`` but are not part of the key: arguments that shape only a by-product which its
    readers verify by content (training's per-epoch scores of the benchmark: the sweep checks which pairs they
    were computed on and scores the saved checkpoints when they differ), never the step's own outputs.
    """
    components = key_components(fn, args)
    key = key_from(components)
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
    fn(out, progress=progress, **args, **(extras or {}))
    write_json(out / STEP_RECORD, {"key": key, "function": f"{fn.__module__}.{fn.__name__}", "notebook": owner,
                                   "unkeyed": sorted(extras or {}),
                                   "wall_s": time.perf_counter() - t0,
                                   "reused": False, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   "components": components, "args": json.loads(json.dumps(canonical(args)))})
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

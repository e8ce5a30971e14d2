"""Expensive steps as one cached call each: training a LoRA adapter, scoring checkpoints, the prescreen.

``run_step(run, "train-cot", train_adapter, profile=prof, train_rows=tr, ...)`` calls
``train_adapter(out_dir, progress=..., **args)`` unless the step already finished in this run
directory with the same key (see :mod:`cqa_utils.pipeline.keys`: the function's module import closure and
the canonical arguments). Its outputs live in ``run_dir/steps/<step>/``:

- ``cqa_key.json`` is written *before* the step starts, so an interrupted step resumes into the
  same folder (training continues from its last complete epoch checkpoint);
- ``_step.json`` is written *after* it finishes (key, wall time, whether it was reused).

A folder holding another key's outputs is renamed aside (``<step>.stale-<time>``), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from cqa_utils.method.config import STANDIN_DIR, Profile
from cqa_utils.method.models import MODEL_CACHE, smoke_text_paths
from cqa_utils.pipeline.artifacts import Run, read_any, write_json
from cqa_utils.pipeline.keys import KEY_FILE, PACKAGE, canonical, step_key

STEP_RECORD = "_step.json"


def smoke_texts_hash() -> str:
    """sha256 of the stand-in files from which the smoke profile's tokenizer is trained."""
    h = hashlib.sha256()
    for f in smoke_text_paths():
        h.update(f.relative_to(STANDIN_DIR).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def refresh_smoke_model(profile: Profile) -> bool:
    """Drop the cached smoke model when the texts it was built from have changed; True if it was dropped.

    The smoke model (:func:`cqa_utils.method.models.materialise`) trains its tokenizer on ``data/standin``; its
    cache records the texts' hash beside it (``<name>.texts.sha256``), so an edit of the stand-in rebuilds it.
    """
    if profile.model_kind != "tiny-random":
        return False
    return _refresh(MODEL_CACHE / profile.name, smoke_texts_hash())


def _refresh(model_dir: Path, want: str) -> bool:
    stamp = model_dir.with_name(model_dir.name + ".texts.sha256")
    stale = model_dir.exists() and (not stamp.exists() or stamp.read_text() != want)
    if stale:
        shutil.rmtree(model_dir)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)
    return stale


def model_provenance(profile: Profile) -> dict[str, Any]:
    """What identifies a profile's weights beyond its name: the version of the package shipping them, or for
    the smoke model the hash of the texts its tokenizer is trained on."""
    if profile.model_kind == "tiny-random":
        return {"model_id": profile.model_id, "texts": smoke_texts_hash()}
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
    module = fn.__module__.removeprefix(PACKAGE + ".")
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

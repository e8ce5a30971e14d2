"""Which weights a step actually loads, by content: part of every step's cache key.

* ``cpu`` and ``smoke`` load a converted local copy, ``.cache/models/<profile>/`` (the GGUF dequantised to
  safetensors; the tiny random model with its tokenizer trained on the stand-in). Beside it,
  ``<profile>.stamp.json`` records what the copy was built from: the source (the installed version of the package
  shipping the GGUF; for the smoke model the hash of the texts its tokenizer learns from) and the converter (the
  normalised code of :func:`cqa_utils.method.models.materialise`'s module and its closure). When either differs
  from the current one the copy is dropped and rebuilt (:func:`refresh`), so no step runs on stale weights. The
  copy's files are then hashed by content (once; the stamp remembers the hash with each file's size and mtime).
* ``paper`` (a hub model): a local folder's weight files by content; a hub id by the content hashes of its files
  in the local hub cache when it is there (the cache names each large file by its sha256), else id and revision.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cqa_utils.method.config import MODEL_CACHE, STANDIN_DIR, Profile, smoke_text_paths
from cqa_utils.pipeline.keys import PACKAGE_DIR, closure_hash, file_hash, installed_version

STAMP_SUFFIX = ".stamp.json"
CONVERTER = "method.models"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
HUB_REVISION = "main"


def smoke_texts_hash() -> str:
    """sha256 of the stand-in files from which the smoke profile's tokenizer is trained."""
    h = hashlib.sha256()
    for f in smoke_text_paths(STANDIN_DIR):
        h.update(f.relative_to(STANDIN_DIR).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def model_dir(profile: Profile, cache: Path = MODEL_CACHE) -> Path:
    """Where the profile's converted copy lives."""
    return Path(cache) / profile.name


def stamp_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + STAMP_SUFFIX)


def source_of(profile: Profile) -> dict[str, Any]:
    """What a converted copy is built from, beyond the converter's code."""
    if profile.model_kind == "tiny-random":
        return {"model_id": profile.model_id, "texts": smoke_texts_hash()}
    dist = profile.gguf_package.replace("_", "-")
    return {"package": dist, "version": installed_version(dist), "file": profile.gguf_file}


def wanted(profile: Profile, root: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The stamp a fresh copy of the profile's model carries: its source and its converter's code hash."""
    return {"source": source_of(profile), "converter": closure_hash([CONVERTER], root)}


def read_stamp(model_path: Path) -> dict[str, Any]:
    p = stamp_path(model_path)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _write_stamp(model_path: Path, stamp: dict[str, Any]) -> None:
    p = stamp_path(model_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
    tmp.replace(p)


def stale_reason(profile: Profile, cache: Path = MODEL_CACHE, root: Path = PACKAGE_DIR) -> str | None:
    """Why the converted copy must be rebuilt (None: it is current, or there is none yet)."""
    d = model_dir(profile, cache)
    if not d.exists():
        return None
    have, want = read_stamp(d), wanted(profile, root)
    if not have:
        return "the copy has no stamp"
    if have.get("source") != want["source"]:
        return f"its source changed ({have.get('source')} → {want['source']})"
    if have.get("converter") != want["converter"]:
        return "the converter code (cqa_utils.method.models and its imports) changed"
    return None


def refresh(profile: Profile, cache: Path = MODEL_CACHE, root: Path = PACKAGE_DIR) -> str | None:
    """Drop the profile's converted copy when it is stale (returns why; None if kept) and stamp what the next
    build is made from. Hub profiles have no copy."""
    if profile.model_kind == "hub":
        return None
    d = model_dir(profile, cache)
    why = stale_reason(profile, cache, root)
    if why:
        shutil.rmtree(d)
    want = wanted(profile, root)
    if why or read_stamp(d).get("source") != want["source"] or read_stamp(d).get("converter") != want["converter"]:
        _write_stamp(d, want)
    return why


def _fingerprint(files: list[Path], base: Path) -> dict[str, list[int]]:
    return {f.relative_to(base).as_posix(): [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def content_hash(files: list[Path], base: Path) -> str:
    """sha256 over the relative names and sha256s of ``files``."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + file_hash(f).encode() + b"\0")
    return h.hexdigest()


def copy_content(model_path: Path) -> str:
    """Content hash of a converted copy (every file but its provenance note), remembered in its stamp."""
    files = [f for f in sorted(model_path.rglob("*")) if f.is_file() and f.name != "cqa_model.json"]
    fp = _fingerprint(files, model_path)
    stamp = read_stamp(model_path)
    if stamp.get("content", {}).get("files") == fp:
        return stamp["content"]["sha256"]
    sha = content_hash(files, model_path)
    _write_stamp(model_path, stamp | {"content": {"sha256": sha, "files": fp}})
    return sha


def hub_identity(model_id: str) -> dict[str, Any]:
    """A hub model's identity: a local folder's weight files by content; a hub id's files in the local hub cache
    by the content hashes the cache names them by; else the id and the revision loaded."""
    local = Path(model_id)
    if local.is_dir():
        files = [f for f in sorted(local.iterdir()) if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.name == "config.json")]
        return {"folder": local.name, "sha256": content_hash(files, local)}
    from huggingface_hub import try_to_load_from_cache  # deferred: only hub profiles need it

    cfg = try_to_load_from_cache(model_id, "config.json", revision=HUB_REVISION)
    if isinstance(cfg, str):
        snap = Path(cfg).parent
        files = {f.name: Path(f).resolve().name for f in sorted(snap.iterdir())
                 if f.suffix in WEIGHT_SUFFIXES or f.name == "config.json"}
        if any(Path(n).suffix in WEIGHT_SUFFIXES for n in files):
            return {"model_id": model_id, "revision": snap.name, "blobs": files}
    return {"model_id": model_id, "revision": HUB_REVISION}


def identity(profile: Profile, build: bool = True, cache: Path = MODEL_CACHE, root: Path = PACKAGE_DIR) -> dict[str, Any]:
    """What identifies the weights a step on ``profile`` loads (see the module docstring).

    For a converted copy that is missing or stale: with ``build`` it is rebuilt first (this loads the model code);
    without, ``{"pending": why}`` (the dry run: the hash is known only once the copy exists).
    """
    if profile.model_kind == "hub":
        return hub_identity(profile.model_id)
    d = model_dir(profile, cache)
    why = stale_reason(profile, cache, root)
    if not build and (why or not (d / "config.json").exists()):
        return {"pending": f"the converted copy will be rebuilt: {why}" if why else "the converted copy will be built"}
    refresh(profile, cache, root)
    if not (d / "config.json").exists():
        from cqa_utils.method.models import materialise  # deferred: converting needs torch and transformers

        materialise(profile)
    return {"copy": profile.name, "sha256": copy_content(d)}

"""Cache keys computed from what a step depends on, never from hand-kept lists.

A cached step (training, scoring a checkpoint, the prescreen) is keyed by
- the source of its function's module **and every ``cqa_utils`` module that module imports,
  transitively** (the import closure, read from the source with :mod:`ast`), and
- the canonical form of the arguments it is called with: rows of data by content, a profile by
  its fields, another step's output folder by that step's key.

So an edit to ``sweep.py`` re-runs the sweep but not training; an edit to ``train.py`` re-runs
training and, through the training key that the sweep receives, the sweep; an edit to
``stats.py`` re-runs neither (the cheap analysis in the notebooks is always recomputed).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE = PACKAGE_DIR.name
KEY_FILE = "cqa_key.json"


def module_imports(source: str, package: str = PACKAGE, here: str = "") -> set[str]:
    """The ``package`` modules a piece of source imports, as dotted names below the package.

    ``here`` is the dotted package the source lives in (``"method"`` for ``cqa_utils/method/x.py``), used to
    resolve relative imports. ``from cqa_utils.method import stats`` gives ``method.stats``; whether that is a
    module or a name in ``method/__init__.py`` is settled by :func:`module_file`.
    """
    found: set[str] = set()
    base = here.split(".") if here else []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parent = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                sub = ".".join([*parent, *(mod.split(".") if mod else [])])
            elif mod == package or mod.startswith(package + "."):
                sub = mod.removeprefix(package).lstrip(".")
            else:
                continue
            found.update(f"{sub}.{alias.name}" if sub else alias.name for alias in node.names)
            if sub:
                found.add(sub)
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix(package + ".") for alias in node.names if alias.name.startswith(package + "."))
    return found


def module_file(name: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The file of dotted module ``name`` below ``root`` (a module or a package's ``__init__.py``), or None."""
    parts = name.split(".")
    for cand in (root.joinpath(*parts[:-1], parts[-1] + ".py"), root.joinpath(*parts, "__init__.py")):
        if cand.exists():
            return cand
    return None


def import_closure(modules: Iterable[str], root: Path = PACKAGE_DIR) -> list[str]:
    """``modules`` plus every package module they import, transitively (sorted dotted names).

    Subpackages are followed; a name that is neither a module nor a package (an attribute imported from a
    package's ``__init__``) is dropped, its package being in the closure already.
    """
    todo, seen = list(modules), set()
    while todo:
        m = todo.pop()
        f = module_file(m, root) if m not in seen else None
        if f is None:
            continue
        seen.add(m)
        here = m if f.name == "__init__.py" else m.rpartition(".")[0]
        todo += sorted(module_imports(f.read_text(), package=root.name, here=here) - seen)
    return sorted(seen)


def closure_hash(modules: Iterable[str], root: Path = PACKAGE_DIR) -> str:
    """sha256 over the source of the import closure of ``modules`` (module names included)."""
    h = hashlib.sha256()
    for m in import_closure(modules, root):
        h.update(m.encode() + b"\0" + module_file(m, root).read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=256)
def _file_sha(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised on path, mtime and size)."""
    st = Path(path).stat()
    return _file_sha(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def canonical(obj: Any) -> Any:
    """A JSON-able form of a step argument that changes exactly when the argument's content does.

    DataFrames by a hash of their CSV form, dataclasses by their fields, folders written by another
    step by that step's key (``cqa_key.json`` inside), other files by their bytes.
    """
    if isinstance(obj, pd.DataFrame):
        return {"dataframe": hashlib.sha256(obj.to_csv(index=False).encode()).hexdigest()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"type": type(obj).__name__, **{f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, Path):
        if (obj / KEY_FILE).exists():
            return {"step_output": json.loads((obj / KEY_FILE).read_text())}
        if obj.is_file():
            return {"file": file_hash(obj)}
        return {"path": str(obj)}
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [canonical(v) for v in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, (set, frozenset)) else items
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot key an argument of type {type(obj).__name__}: pass data, not live objects (models load inside a step)")


def key_of(obj: Any) -> str:
    """A stable sha256 of ``canonical(obj)``."""
    return hashlib.sha256(json.dumps(canonical(obj), sort_keys=True).encode()).hexdigest()


def step_key(module: str, args: dict[str, Any], root: Path = PACKAGE_DIR) -> str:
    """The key of one cached step: its module's import closure and its arguments."""
    return key_of({"code": closure_hash([module], root), "args": args})

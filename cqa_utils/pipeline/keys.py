"""Cache keys computed from what a step depends on, never from hand-kept lists.

A cached step (training, scoring a checkpoint, the prescreen) is keyed by its **components**:

- ``code``: per module of the step function's import closure (its module and every ``cqa_utils`` module it
  imports, transitively, subpackages included), a hash of the module's *normalised syntax tree*: the
  :func:`ast.dump` of the parsed source with docstrings removed, so comments, docstrings and formatting do not
  count and a changed constant or expression does. A step function defined outside the package (in a notebook
  or a test) is keyed by its own normalised source plus the closure of the package modules it uses;
- ``packages``: the installed version of every third-party distribution the closure imports;
- ``args``: the canonical form of each argument (rows of data by content, a profile by its fields, another
  step's output folder by that step's key);
- and, added by :mod:`cqa_utils.pipeline.cache` for each profile argument, the ``weights`` actually loaded, the
  ``precision`` and device decision and the ``hparams`` set for this run.

The key is the hash of the components; the step record keeps the components themselves, so that
``cqa run --dry-run`` can say which module, package or setting makes a step re-run (:func:`differences`).
So an edit to ``sweep.py`` re-runs the sweep but not training; an edit to ``train.py`` re-runs training and,
through the training key that the sweep receives, the sweep; an edit to ``stats.py`` re-runs neither (the cheap
analysis in the notebooks is always recomputed); a comment anywhere re-runs nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE = PACKAGE_DIR.name
KEY_FILE = "cqa_key.json"
KEY_SCHEME = 2
"""Version of the key's recipe; a step record of another scheme (or none: the raw-source keys before) re-runs."""
EXTERNAL = "<outside the package>"


def normalised_tree(source: str) -> str:
    """The :func:`ast.dump` of ``source`` without docstrings: what a module *does*, not how it is written."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_hash(source: str) -> str:
    """sha256 of :func:`normalised_tree` (short: 16 hex digits are plenty to tell versions of one module apart)."""
    return hashlib.sha256(normalised_tree(source).encode()).hexdigest()[:16]


@lru_cache(maxsize=512)
def _module_hash(path: str, mtime_ns: int, size: int) -> str:
    return source_hash(Path(path).read_text(encoding="utf-8"))


def module_hash(path: Path) -> str:
    """:func:`source_hash` of a module file (memoised on path, mtime and size)."""
    st = Path(path).stat()
    return _module_hash(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def external_imports(source: str, package: str = PACKAGE) -> set[str]:
    """Top-level names of the third-party modules ``source`` imports (not the standard library, not relative)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return {n for n in found if n not in sys.stdlib_module_names and n not in ("__future__", package)}


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


def code_hashes(modules: Iterable[str], root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Dotted module name → normalised-tree hash, for the import closure of ``modules``."""
    return {m: module_hash(module_file(m, root)) for m in import_closure(modules, root)}


def closure_hash(modules: Iterable[str], root: Path = PACKAGE_DIR) -> str:
    """One hash over :func:`code_hashes` of ``modules``."""
    return hashlib.sha256(json.dumps(code_hashes(modules, root), sort_keys=True).encode()).hexdigest()


def closure_imports(modules: Iterable[str], root: Path = PACKAGE_DIR) -> set[str]:
    """Top-level third-party names imported anywhere in the import closure of ``modules``."""
    out: set[str] = set()
    for m in import_closure(modules, root):
        out |= external_imports(module_file(m, root).read_text(encoding="utf-8"), root.name)
    return out


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (None if it is not installed)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Distribution → installed version for top-level import names (``yaml`` → ``PyYAML``); a name no
    installed distribution provides is kept under its own name with version None."""
    out: dict[str, str | None] = {}
    for n in sorted(set(names)):
        for dist in _distributions().get(n, [n]):
            out[dist] = installed_version(dist)
    return out


def _referenced(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _referenced(c)
    return names


def function_code(fn: Callable[..., Any], root: Path = PACKAGE_DIR) -> tuple[dict[str, str], set[str]]:
    """(code hashes, third-party top-level names) of a step function.

    A function of a package module: its module's import closure. A function defined elsewhere (a notebook
    cell, a test): its own normalised source under ``<outside the package>:<qualified name>``, plus the closure
    of the package modules its source imports or its body names through its globals.
    """
    module = fn.__module__ or ""
    if module == PACKAGE or module.startswith(PACKAGE + "."):
        mods = [module.removeprefix(PACKAGE).lstrip(".") or "__init__"]
        return code_hashes(mods, root), closure_imports(mods, root)
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError) as e:
        raise TypeError(f"cannot key step function {fn.__qualname__}: its source is not available ({e})") from None
    pkg_mods, ext = set(module_imports(textwrap.dedent(src))), external_imports(src)
    for name in _referenced(fn.__code__):
        obj = fn.__globals__.get(name)
        owner = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
        if not isinstance(owner, str):
            continue
        if owner == PACKAGE or owner.startswith(PACKAGE + "."):
            pkg_mods.add(owner.removeprefix(PACKAGE).lstrip("."))
        elif owner.split(".")[0] not in sys.stdlib_module_names and owner not in ("builtins", "__main__"):
            ext.add(owner.split(".")[0])
    hashes = code_hashes(pkg_mods, root)
    hashes[f"{EXTERNAL}:{fn.__qualname__}"] = source_hash(src)
    return hashes, ext | closure_imports(pkg_mods, root)


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


def code_components(fn: Callable[..., Any], args: dict[str, Any], root: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The generic components of a step's key: scheme, code, packages and each argument's canonical hash."""
    code, ext = function_code(fn, root)
    module = EXTERNAL if any(k.startswith(EXTERNAL) for k in code) else fn.__module__  # a notebook's module name is incidental
    return {"scheme": KEY_SCHEME, "function": f"{module}.{fn.__qualname__}", "module": module, "code": code,
            "packages": package_versions(ext), "args": {k: key_of(v) for k, v in sorted(args.items())}}


def key_from(components: dict[str, Any]) -> str:
    """The step key: a sha256 of the components."""
    return hashlib.sha256(json.dumps(components, sort_keys=True, default=str).encode()).hexdigest()


def step_key(fn: Callable[..., Any], args: dict[str, Any], root: Path = PACKAGE_DIR) -> str:
    """The key of one cached step from its function and arguments alone (no profile-derived components)."""
    return key_from(code_components(fn, args, root))


def _short(v: Any) -> str:
    return v if isinstance(v, str) and len(v) < 40 else json.dumps(v, sort_keys=True, default=str)[:60]


def differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between the components a step was computed with (``old``) and the current ones (``new``).

    Only the parts present in ``new`` are compared (a dry run leaves out what only the notebook can compute).
    An empty list: the step is reused as far as these parts go.
    """
    if not old or old.get("scheme") != KEY_SCHEME:
        return ["computed by an older key scheme"]
    out: list[str] = []
    if "code" in new:
        a, b = old.get("code", {}), new["code"]
        out += [f"code of {m} changed" for m in sorted(set(a) & set(b)) if a[m] != b[m]]
        out += [f"now imports {m}" for m in sorted(set(b) - set(a))]
        out += [f"no longer imports {m}" for m in sorted(set(a) - set(b))]
    if "packages" in new:
        a, b = old.get("packages", {}), new["packages"]
        out += [f"package {d} {a.get(d)} → {b.get(d)}" for d in sorted(set(a) | set(b)) if a.get(d) != b.get(d)]
    for part, what in (("weights", "weights of"), ("precision", "precision/device of"), ("hparams", "hparams set for this run in")):
        if part not in new:
            continue
        a, b = old.get(part, {}), new[part]
        for arg in sorted(set(a) | set(b)):
            x, y = a.get(arg), b.get(arg)
            if x == y:
                continue
            if part == "hparams" and isinstance(x, dict) and isinstance(y, dict):
                diff = ", ".join(f"{k}={_short(y[k])}" if k in y else f"{k} back to the paper's value"
                                 for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k))
            elif isinstance(x, dict) and isinstance(y, dict):
                diff = ", ".join(f"{k} {_short(x.get(k))} → {_short(y.get(k))}" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k))
            else:
                diff = f"{_short(x)} → {_short(y)}"
            out.append(f"{what} {arg}: {diff}")
    if "args" in new:
        a, b = old.get("args", {}), new["args"]
        out += [f"argument {k} changed" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out

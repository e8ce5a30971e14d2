"""Cache keys come from what a step depends on: its module's import closure and its arguments."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from cqa_utils.method.config import get_profile
from cqa_utils.pipeline import keys
from cqa_utils.pipeline.artifacts import Run
from cqa_utils.pipeline.cache import run_step, step_record, step_table


def test_module_imports_reads_every_form():
    src = ("from . import a, b\nfrom .c import x\nimport cqa_utils.d\nfrom cqa_utils.e import y\nfrom cqa_utils import f\n"
           "import numpy\nfrom pandas import DataFrame\ndef g():\n    from .h import z\n")
    assert keys.module_imports(src) == {"a", "b", "c", "c.x", "d", "e", "e.y", "f", "h", "h.z"}
    assert keys.module_imports("from .c import x\nfrom ..d import y\n", here="method.sub") == {
        "method.sub.c", "method.sub.c.x", "method.d", "method.d.y"}


def test_import_closure_follows_subpackages(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("from .c import x\n")
    (root / "sub" / "c.py").write_text("x = 1\n")
    assert keys.import_closure(["a"], root) == ["a", "sub", "sub.b", "sub.c"]


def _package(tmp: Path, files: dict[str, str]) -> Path:
    root = tmp / "pkg"
    root.mkdir()
    for name, src in files.items():
        (root / f"{name}.py").write_text(src)
    return root


def test_import_closure_is_transitive_and_ignores_unrelated(tmp_path):
    root = _package(tmp_path, {"a": "from .b import f\n", "b": "from . import c\n", "c": "x = 1\n", "d": "from .a import f\n"})
    assert keys.import_closure(["a"], root) == ["a", "b", "c"]
    assert keys.import_closure(["d"], root) == ["a", "b", "c", "d"]
    before = keys.closure_hash(["a"], root)
    (root / "d.py").write_text("from .a import f\ny = 2\n")  # not imported by a
    assert keys.closure_hash(["a"], root) == before
    (root / "c.py").write_text("x = 2\n")  # imported by a, through b
    assert keys.closure_hash(["a"], root) != before


@pytest.fixture
def pkg_copy(tmp_path) -> Path:
    """A copy of the real package's sources, to edit."""
    dst = tmp_path / "cqa_utils"
    shutil.copytree(keys.PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _edit(root: Path, module: str) -> None:
    p = root / f"{module.replace('.', '/')}.py"
    p.write_text(p.read_text() + "\n\ndef _edited_by_the_test() -> int:\n    return 1\n")


def test_editing_one_module_changes_exactly_the_steps_that_import_it(pkg_copy):
    steps = ("pipeline.train_step", "pipeline.sweep_step", "pipeline.prescreen_step")
    key = lambda root: {s: keys.closure_hash([s], root) for s in steps}  # noqa: E731
    k0 = key(pkg_copy)
    assert key(pkg_copy) == k0  # nothing changed: nothing re-runs
    _edit(pkg_copy, "method.sweep")
    k1 = key(pkg_copy)
    assert k1["pipeline.sweep_step"] != k0["pipeline.sweep_step"]
    assert k1["pipeline.train_step"] == k0["pipeline.train_step"] and k1["pipeline.prescreen_step"] == k0["pipeline.prescreen_step"]
    _edit(pkg_copy, "method.train")  # the sweep reads checkpoints with train's helpers: both re-run
    k2 = key(pkg_copy)
    assert k2["pipeline.train_step"] != k1["pipeline.train_step"] and k2["pipeline.sweep_step"] != k1["pipeline.sweep_step"]
    _edit(pkg_copy, "method.figures")  # analysis code: no expensive step depends on it
    assert key(pkg_copy) == k2


def test_canonical_keys_data_by_content(tmp_path):
    prof = get_profile("smoke")
    assert keys.key_of({"p": prof}) == keys.key_of({"p": get_profile("smoke")})
    assert keys.key_of({"p": prof}) != keys.key_of({"p": prof.with_overrides(learning_rate=1e-4)})
    assert keys.key_of([{"a": 1}]) != keys.key_of([{"a": 2}])
    df = pd.DataFrame({"x": [1, 2]})
    assert keys.key_of(df) == keys.key_of(df.copy()) != keys.key_of(df.assign(x=[1, 3]))
    step_out = tmp_path / "out"
    step_out.mkdir()
    (step_out / keys.KEY_FILE).write_text('"abc"')
    assert keys.canonical(step_out) == {"step_output": "abc"}
    with pytest.raises(TypeError, match="live objects"):
        keys.canonical(object())


def _writer(out: Path, progress=print, rows=(), tag="") -> None:
    calls.append(tag)
    (Path(out) / "rows.json").write_text(str(list(rows)))


calls: list[str] = []


def test_run_step_reuses_reruns_and_never_deletes(tmp_path):
    calls.clear()
    run = Run(tmp_path / "run", "smoke")
    out = run_step(run, "s", _writer, progress=lambda m: None, rows=[1, 2], tag="first")
    assert calls == ["first"] and (out / "rows.json").exists() and not step_record(run, "s")["reused"]
    run_step(run, "s", _writer, progress=lambda m: None, rows=[1, 2], tag="first")
    assert calls == ["first"] and step_record(run, "s")["reused"]  # same key: not called again
    run_step(run, "s", _writer, progress=lambda m: None, rows=[1, 3], tag="second")
    assert calls == ["first", "second"]
    stale = [p for p in (run.dir / "steps").iterdir() if p.name.startswith("s.stale-")]
    assert len(stale) == 1 and (stale[0] / "rows.json").read_text() == "[1, 2]"  # kept aside, not deleted
    assert [r["step"] for r in step_table(run.dir)] == ["s"]


def test_interrupted_step_resumes_into_its_folder(tmp_path):
    run = Run(tmp_path / "run", "smoke")

    def boom(out: Path, progress=print, rows=()) -> None:
        (Path(out) / "partial").write_text("epoch 1")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_step(run, "t", boom, progress=lambda m: None, rows=[1])
    assert step_record(run, "t") is None
    seen = []

    def resume(out: Path, progress=print, rows=()) -> None:
        seen.append((Path(out) / "partial").read_text())

    resume.__module__ = boom.__module__
    run_step(run, "t", resume, progress=lambda m: None, rows=[1])
    assert seen == ["epoch 1"]  # same key: the same folder, with what the interrupted call left


def test_step_records_name_their_notebook_and_the_dry_run_lists_them(tmp_path):
    from cqa_utils.pipeline.run import plan

    calls.clear()
    run = Run(tmp_path / "run", "smoke")
    run_step(run, "s", _writer, progress=lambda m: None, owner="03_train", rows=[1])
    assert step_record(run, "s")["notebook"] == "03_train"
    run_step(run, "s", _writer, progress=lambda m: None, owner="03_train", rows=[1])  # reused: still named
    assert step_record(run, "s")["notebook"] == "03_train" and step_record(run, "s")["reused"]
    lines = plan(get_profile("smoke"), run.dir, ["03_train"])
    assert any(ln.strip().startswith("03_train") and "its steps s (took" in ln for ln in lines)


def test_smoke_model_cache_follows_the_texts_it_was_built_from(tmp_path, monkeypatch):
    from cqa_utils.pipeline import cache

    d = tmp_path / "smoke"
    assert cache._refresh(d, "a") is False  # nothing built yet: only the stamp is written
    d.mkdir()
    (d / "config.json").write_text("{}")
    assert cache._refresh(d, "a") is False and d.exists()  # same texts: kept
    assert cache._refresh(d, "b") is True and not d.exists()  # other texts: dropped, so it is rebuilt
    standin = tmp_path / "standin"
    standin.mkdir()
    (standin / "train.jsonl").write_text('{"id": "x"}\n')
    monkeypatch.setattr(cache, "STANDIN_DIR", standin)
    before = cache.model_provenance(get_profile("smoke"))
    cpu = cache.model_provenance(get_profile("cpu"))
    (standin / "train.jsonl").write_text('{"id": "y"}\n')
    assert cache.model_provenance(get_profile("smoke")) != before  # smoke steps re-run after a data edit
    assert cache.model_provenance(get_profile("cpu")) == cpu  # the cpu model does not depend on the texts

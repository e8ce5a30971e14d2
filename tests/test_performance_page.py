"""The Performance appendix: goals are judged from the results file, old formats are skipped, figures render."""

from __future__ import annotations

from cqa_utils.book import goal_table, performance_figures


def _results(score_speedup: float, agree: float, train_rows: list[tuple[float, float]], total_s: float) -> dict:
    train = [{"setup": "straightforward trl (...)", "speedup": 1.0, "train_loss_max_rel_diff": 0.0,
              "eval_loss_max_rel_diff": 0.0, "epochs": 3, "rows": 16}]
    train += [{"setup": f"ours {i} (...)", "speedup": s, "train_loss_max_rel_diff": d, "eval_loss_max_rel_diff": d / 2,
               "epochs": 3, "rows": 16} for i, (s, d) in enumerate(train_rows)]
    train += [{"setup": "floor: GEMM only", "wall_s": 3000.0, "epochs": 12, "rows": 94}]  # no speed-up: not a goal row
    return {"sections": {
        "Scoring (full benchmark requests)": [
            {"scorer": "lm-eval batch 8", "speedup_vs_lm_eval": 1.0},
            {"scorer": "ours (what the sweep runs)", "speedup_vs_lm_eval": score_speedup,
             "max_abs_diff_vs_fp64_ref_nats": agree, "max_abs_diff_vs_lm_eval_nats": 1e-3}],
        "Epoch sweep: adapter switching vs reloading": [
            {"mode": "reload", "speedup": 1.0},
            {"mode": "one base, merged (as the sweep runs)", "speedup": 1.8, "max_abs_diff_dI_nats": 0.0},
            {"mode": "one base, unmerged", "speedup": 1.5, "max_abs_diff_dI_nats": 2e-4}],
        "Training (3 epochs on 16 rows, same seed)": train,
        "End to end (last cqa run)": [{"stage": "01_data", "wall_s": 5.0}, {"stage": "cqa book", "wall_s": 60.0},
                                      {"stage": "total (cqa run + cqa book)", "wall_s": total_s}],
        "Old format section": [{"unexpected": 1}],
    }}


def test_goals_are_judged_from_the_numbers() -> None:
    g = goal_table(_results(1.3, 6e-6, [(2.0, 0.001), (3.1, 0.004)], 2000.0)).set_index("goal")["met"]
    assert g.filter(like="scoring").tolist() == ["no"]  # fast enough is not reached
    assert g.filter(like="sweep").tolist() == ["yes"]  # judged on the merged row the sweep runs, not the last row
    assert g.filter(like="training").tolist() == ["no", "yes"]  # one row per setup of ours
    assert g.filter(like="30 min").tolist() == ["no"]
    g = goal_table(_results(2.5, 2e-4, [(3.0, 0.02)], 1700.0)).set_index("goal")["met"]
    assert g.filter(like="scoring").tolist() == ["no"]  # fast but outside the agreement bound
    assert g.filter(like="training").tolist() == ["no"]  # fast but the loss curve moved > 1 %
    assert g.filter(like="30 min").tolist() == ["yes"]


def test_figures_render_as_raw_html_blocks() -> None:
    figs = performance_figures(_results(1.3, 6e-6, [(3.0, 0.001)], 2000.0))
    assert len(figs) == 2
    assert all(f.lstrip().startswith("```{raw} html") and "Plotly.newPlot" in f for f in figs)
    assert "cqa book" in figs[1] and "total (cqa run" not in figs[1]  # stages only; the total is in the table


def test_each_section_comes_from_the_newest_file_that_measured_it(tmp_path, monkeypatch) -> None:
    import json

    import cqa_utils.book as book

    (tmp_path / "bench" / "results").mkdir(parents=True)
    files = {"b-old.json": {"date": "2026-11-24 02:29", "sections": {"End to end (last cqa run)": [{"stage": "x", "wall_s": 1.0}],
                                                                    "Scoring (full)": [{"scorer": "old"}]}},
             "a-new.json": {"date": "2026-11-30 10:00", "native_bf16": False,  # file names sort the other way
                            "sections": {"Scoring (full)": [{"scorer": "new"}], "End to end (last cqa run)": []}}}
    for name, res in files.items():
        (tmp_path / "bench" / "results" / name).write_text(json.dumps(res))
    monkeypatch.setattr(book, "REPO_ROOT", tmp_path)
    got = [(name, rows[0], path.name) for name, rows, path, _ in book.newest_sections()]
    assert got == [("Scoring (full)", {"scorer": "new"}, "a-new.json"),  # newer by its recorded date
                   ("End to end (last cqa run)", {"stage": "x", "wall_s": 1.0}, "b-old.json")]  # an empty section is no measurement
    text, _ = book.performance_page()
    assert "no native bf16" in text and "b-old.json" in text


def test_goal_sentence_and_judgement_read_one_table(monkeypatch) -> None:
    import cqa_utils.book as book

    assert "≥ 2.5× trl" in book.GOALS and "≤ 1e-4 nats" in book.GOALS and "≤ 30 min" in book.GOALS
    res = _results(1.3, 6e-6, [(2.0, 0.001)], 2000.0)
    monkeypatch.setitem(book.GOAL, "training_speedup", 1.5)
    monkeypatch.setitem(book.GOAL, "e2e_minutes", 40)
    g = goal_table(res).set_index("goal")["met"]
    assert g.filter(like="training ≥ 1.5×").tolist() == ["yes"]
    assert g.filter(like="≤ 40 min").tolist() == ["yes"]

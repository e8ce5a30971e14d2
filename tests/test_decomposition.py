"""Decomposition of Δ(ΔI) into conditional and unconditional parts, and the quoting hypothesis, by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cqa_utils.method import decomposition as D
from cqa_utils.method import stats


def _scores() -> pd.DataFrame:
    """Two pairs, base and epoch 5, log-probs chosen so every part is easy to add up by hand."""
    rows = []
    for model, epoch, shift in (("base", 0, 0.0), ("epoch-5", 5, 1.0)):
        for i, dom in (("a", "literary"), ("b", "factual")):
            cg, ug, cb, ub = -10.0, -12.0, -11.0, -11.5
            if model != "base" and i == "a":
                cg, ug = cg + shift, ug + 3 * shift  # good more likely with context (+1) and alone (+3)
            rec = {"model": model, "epoch": epoch, "id": i, "domain": dom, "logp_cond_good": cg, "logp_uncond_good": ug,
                   "logp_cond_bad": cb, "logp_uncond_bad": ub}
            rec |= {"I_good": cg - ug, "I_bad": cb - ub}
            rec["dI"] = rec["I_good"] - rec["I_bad"]
            rows.append(rec)
    return pd.DataFrame(rows)


def test_parts_by_hand_and_against_table1_items():
    p = D.ddi_parts(_scores(), "nats").set_index("id")
    # pair a: conditional log-odds (good - bad) went from -10 - -11 = 1 to -9 - -11 = 2: +1;
    # unconditional from -12 - -11.5 = -0.5 to -9 - -11.5 = 2.5: +3; so Δ(ΔI) = 1 - 3 = -2
    assert p.loc["a", "d_cond"] == pytest.approx(1.0) and p.loc["a", "d_uncond"] == pytest.approx(3.0)
    assert p.loc["a", "ddI"] == pytest.approx(-2.0) and p.loc["b", "ddI"] == pytest.approx(0.0)
    items = stats.item_deltas(_scores(), "nats").set_index("id")  # Δ(ΔI) from the I columns, another path
    assert p.loc["a", "ddI"] == pytest.approx(items.loc["a", "ddI"]) and p.loc["b", "ddI"] == pytest.approx(items.loc["b", "ddI"])
    bits = D.ddi_parts(_scores()).set_index("id")  # bits by default: the same parts divided by ln 2
    assert bits.loc["a", "d_uncond"] == pytest.approx(3.0 / math.log(2)) and (bits.unit == "bits").all()
    assert bits.loc["a", "ddI"] == pytest.approx(stats.item_deltas(_scores(), "bits").set_index("id").loc["a", "ddI"])


def test_quoted_candidates_counts_four_word_runs():
    rows = [{"id": "t1", "output": "Option B, where the mugs shattered on the tiles, is too loud; A is quiet.",
             "decision": {"context": "c", "candidates": ["She set the kettle down.", "the mugs shattered on the tiles"],
                          "expert_choice": 0}},
            {"id": "t2", "output": "She set the kettle down and that is right.",
             "decision": {"context": "c", "candidates": ["She set the kettle down.", "He left."], "expert_choice": 0}},
            {"id": "t3", "output": "no decision here"}]
    q = D.quoted_candidates(rows).set_index("id")
    assert list(q.index) == ["t1", "t2"]
    assert bool(q.loc["t1", "quotes_rejected"]) and not bool(q.loc["t1", "quotes_chosen"])
    assert bool(q.loc["t2", "quotes_chosen"]) and not bool(q.loc["t2", "quotes_rejected"])  # "He left." has < 4 words


def test_option_overlap_by_hand():
    pairs = [{"id": "p", "domain": "literary", "context": "x", "good": "The heron waited.", "bad": "The kettle shattered loudly."}]
    ov = D.option_overlap(pairs, ["A kettle shattered somewhere.", "Nothing else."]).iloc[0]
    # content words: good {heron, waited} -> 0 of 2 in the targets; bad {kettle, shattered, loudly} -> 2 of 3
    assert ov.overlap_good == 0.0 and ov.overlap_bad == pytest.approx(2 / 3) and ov.overlap_diff == pytest.approx(2 / 3)


def _which(d_cond: float, d_uncond: float) -> pd.DataFrame:
    return pd.DataFrame([{"adapter": "CoT", "domain": "literary", "mean d_cond": d_cond, "mean d_uncond": d_uncond,
                          "mean |d_cond|": abs(d_cond), "mean |d_uncond|": abs(d_uncond),
                          "items where |d_uncond| > |d_cond|": 15 if abs(d_uncond) > abs(d_cond) else 3, "n": 20}])


def _tests(rho: float, p: float) -> pd.DataFrame:
    return pd.DataFrame([{"adapter": "CoT", "domain": "literary", "spearman(overlap_diff, ddI)": rho, "one-sided p (rho < 0)": p}])


def test_sign_decided_by_signed_contributions_not_mean_abs():
    # the reference run's shape: both parts fall, the unconditional more; |conditional| is larger on average per item
    w = _which(-8.48, -10.18).assign(**{"mean |d_cond|": 24.55, "mean |d_uncond|": 21.21})
    r = D.sign_of_effect(w, 5, "bits")
    # mean Δ(ΔI) = −8.48 − (−10.18) = +1.70; contributions: conditional −8.48, unconditional +10.18 → unconditional
    assert r["mean_ddI"] == pytest.approx(1.70) and r["contribution_uncond"] == pytest.approx(10.18)
    assert r["sign_decided_by"] == "unconditional" and r["matches_paper"] is False
    for needle in ("+1.70 bits", "-8.48 bits", "-10.18 bits", "**unconditional**", "does **not** match", "24.55 bits"):
        assert needle in r["sentence"], needle
    r = D.sign_of_effect(_which(2.0, 0.5), 5, "bits")  # conditional up +2.0, unconditional +0.5 against it: +1.5
    assert r["sign_decided_by"] == "conditional" and r["matches_paper"] is True and "matches the paper" in r["sentence"]
    r = D.sign_of_effect(_which(0.3, -2.0), 5, "nats")  # both push up; the unconditional (+2.0) more than the conditional
    assert r["sign_decided_by"] == "unconditional" and r["matches_paper"] is False and "both push" in r["sentence"]
    assert "nats" in r["sentence"] and "bits" not in r["sentence"]
    r = D.sign_of_effect(_which(-3.0, -1.0), 5, "bits")  # Δ(ΔI) = −2: the conditional fall decides a negative sign
    assert r["sign_decided_by"] == "conditional" and r["mean_ddI"] == pytest.approx(-2.0) and r["matches_paper"] is False
    r = D.sign_of_effect(_which(1.0, 1.0), 5, "bits")
    assert r["sign_decided_by"] == "neither" and r["matches_paper"] is False
    assert D.sign_of_effect(_which(1.0, 1.0).assign(domain="factual"), 5, "bits")["sign_decided_by"] is None


def test_explain_both_ways_and_missing():
    yes = D.explain(_which(0.5, 3.0), _tests(-0.6, 0.003), 5, unit="bits")
    assert yes["supported"] is True and yes["sign_decided_by"] == "unconditional" and yes["mean_ddI"] == pytest.approx(-2.5)
    assert "**supported**" in yes["sentence"] and "ρ = -0.60" in yes["sentence"] and "-2.50 bits" in yes["sentence"]
    no = D.explain(_which(2.0, 0.5), _tests(0.1, 0.66), 5, unit="bits")
    assert no["supported"] is False and no["sign_decided_by"] == "conditional" and "**not supported**" in no["sentence"]
    assert D.explain(_which(2.0, 0.5), _tests(-0.2, 0.2), 5, unit="bits")["supported"] is False  # right sign, not significant
    none = D.explain(_which(1.0, 1.0).assign(domain="factual"), _tests(0.0, 1.0), 5, unit="bits")
    assert none["supported"] is None and "nothing to explain" in none["sentence"]

"""KL prescreen: one-hot KL in log space (monotone and finite in the margin), the three variants, end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cqa_utils.method import prescreen as P
from cqa_utils.method import scoring


def test_kl_one_hot_by_hand():
    assert P.kl_one_hot([math.log(0.2), math.log(0.8)], 0) == pytest.approx(-math.log(0.2), abs=1e-12)
    assert P.kl_one_hot([math.log(0.5), math.log(0.3), math.log(0.2)], 2) == pytest.approx(-math.log(0.2), abs=1e-12)
    assert P.kl_one_hot([7.0, 7.0, 7.0], 1) == pytest.approx(math.log(3), abs=1e-12)  # uniform: log k
    with pytest.raises(ValueError, match="out of range"):
        P.kl_one_hot([0.0, 1.0], 2)


def test_kl_one_hot_equals_general_kl():
    rng = np.random.default_rng(0)
    for _ in range(100):
        k = int(rng.integers(2, 6))
        s, ch = rng.normal(0, 5, k), int(rng.integers(k))
        q = np.exp(s) / np.exp(s).sum()
        assert P.kl_one_hot(s, ch) == pytest.approx(P.kl(np.eye(k)[ch], q), abs=1e-9)
        assert P.kl_one_hot(s, ch) >= 0


@pytest.mark.parametrize("k", [2, 4])
def test_kl_monotone_and_finite_in_the_margin(k):
    margins = [0.0, 5.0, 50.0, 500.0, 5000.0]
    right = [P.kl_one_hot([m] + [0.0] * (k - 1), 0) for m in margins]  # the model favours the expert's choice by m nats
    wrong = [P.kl_one_hot([m] + [0.0] * (k - 1), 1) for m in margins]  # ... favours another candidate by m nats
    assert all(np.isfinite(right + wrong))
    assert right[0] == pytest.approx(math.log(k)) and all(a > b for a, b in zip(right, right[1:]))
    assert all(a < b for a, b in zip(wrong, wrong[1:])) and wrong[-1] == pytest.approx(5000.0, rel=1e-9)
    assert right[3] == pytest.approx((k - 1) * math.exp(-500.0), rel=1e-9)  # log1p keeps a 500-nat margin's KL exact


def test_decision_scores_variants():
    v = P.decision_scores([-10.0, -30.0], [-12.0, -29.0], [5, 15])
    np.testing.assert_allclose(v["raw"], [-10.0, -30.0])
    np.testing.assert_allclose(v["norm"], [-2.0, -2.0])
    np.testing.assert_allclose(v["pmi"], [2.0, -1.0])


def test_unconditional_request_scores_the_same_ids(smoke):
    _, tok, model, pid = smoke
    sc = scoring.Scorer(model, tok, pid)
    for ctx, cand in [("She opened the door.", "Rain came in."), ("Trailing space ", "here"), ("line\n\n", "next one")]:
        u = sc.encode(scoring.Request(ctx, cand, conditional=False))
        c = sc.encode(scoring.Request(ctx, cand))
        assert u.ctx == [pid] and u.cont == c.cont


def test_prescreen_end_to_end(smoke):
    _, tok, model, pid = smoke
    rows = [
        {"id": "a", "decision": {"context": "Nessa opened the door and looked at the rain.",
                                 "candidates": ["She stepped back inside.", "A brass band marched through the kitchen, playing loudly."],
                                 "expert_choice": 0}},
        {"id": "b"},  # no decision point: skipped
        {"id": "c", "decision": {"context": "The ferry was late again.", "candidates": ["He waited.", "He swam.", "He sang a song."],
                                 "expert_choice": 2}},
    ]
    sc = scoring.Scorer(model, tok, pid)
    df = P.prescreen(sc, rows)
    assert list(df["rank"]) == [1, 2] and set(df.id) == {"a", "c"}
    assert df.kl_pmi.is_monotonic_decreasing  # ranked by PMI by default
    a = df.set_index("id").loc["a"]
    # independent path: the pair scorer's conditional and unconditional log-probs of the two candidates
    pr = sc.pairs([{"id": "a", "domain": "literary", "context": rows[0]["decision"]["context"],
                                           "good": rows[0]["decision"]["candidates"][0],
                                           "bad": rows[0]["decision"]["candidates"][1]}]).iloc[0]
    pmi = np.array([pr.I_good, pr.I_bad])
    assert a.kl_pmi == pytest.approx(-(pmi[0] - np.logaddexp(*pmi)), abs=1e-4)
    raw = np.array([pr.logp_cond_good, pr.logp_cond_bad])
    assert a.kl_raw == pytest.approx(np.logaddexp(*raw) - raw[0], abs=1e-4)
    norm = raw / np.array([pr.n_tokens_good, pr.n_tokens_bad])
    assert a.kl_norm == pytest.approx(np.logaddexp(*norm) - norm[0], abs=1e-4)
    assert a.p_expert_choice_pmi == pytest.approx(math.exp(-a.kl_pmi)) and a.kl_uniform == pytest.approx(math.log(2))
    assert list(P.prescreen(sc, rows, rank_by="kl_raw").kl_raw) == sorted(df.kl_raw, reverse=True)
    with pytest.raises(ValueError, match="rank_by"):
        P.prescreen(sc, rows, rank_by="kl_smoothed")
    assert P.keep_top_k(df, 1) == {df.id.iloc[0]} and P.keep_top_k(df, None) == {"a", "c"}

"""The data-scale sweep (§4.4): nested stratified subsets, the per-size table, the saturation rule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from cqa_utils.method import claims as C
from cqa_utils.method.config import STANDIN_DIR
from cqa_utils.method.epoch_scoring import nested_order, nested_subsets, scale_table, touch_stratum
from tests.conftest import read_rows


def test_touch_stratum_is_the_sorted_touch_set():
    assert touch_stratum({"touches": ["reality", "intent"]}) == "intent+reality"
    assert touch_stratum({"touches": ["intent", "reality"]}) == touch_stratum({"touches": ["reality", "intent", "intent"]})
    assert touch_stratum({}) == "none" and touch_stratum({"touches": []}) == "none"


def test_subsets_are_nested_and_stratified_on_the_standin():
    rows = read_rows(STANDIN_DIR / "train.jsonl")
    subs = nested_subsets(rows, [10, 30, 60, len(rows)])
    sizes = sorted(subs)
    for a, b in zip(sizes, sizes[1:]):
        assert set(subs[a]) < set(subs[b])  # nested
    assert sorted(subs[len(rows)]) == list(range(len(rows))) and all(len(set(v)) == len(v) for v in subs.values())
    full = Counter(touch_stratum(r) for r in rows)
    for n, idx in subs.items():
        got = Counter(touch_stratum(rows[i]) for i in idx)
        for k, size in full.items():  # each touch set within one row of its proportional share
            assert abs(got[k] - n * size / len(rows)) <= 1, (n, k, got[k], n * size / len(rows))
    assert nested_subsets(rows, [30], seed=42)[30] == subs[30] and nested_subsets(rows, [30], seed=7)[30] != subs[30]


def test_every_prefix_stays_within_one_row_of_its_share_on_random_strata():
    rng = np.random.default_rng(3)
    for t in range(200):
        sizes = rng.integers(1, 30, rng.integers(1, 7))
        rows = [{"touches": [f"k{j}"]} for j, s in enumerate(sizes) for _ in range(s)]
        order = nested_order(rows, seed=t)
        assert sorted(order) == list(range(len(rows)))
        count: Counter = Counter()
        for n, i in enumerate(order, 1):
            count[touch_stratum(rows[i])] += 1
            assert all(abs(count[f"k{j}"] - n * s / len(rows)) <= 1 for j, s in enumerate(sizes))


def test_subset_sizes_out_of_range_are_refused():
    with pytest.raises(ValueError, match="between 1 and the 3"):
        nested_subsets([{}, {}, {}], [2, 4])


def _scores(dI: list[float], epoch: int, domain: str = "literary") -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{domain}{i}" for i in range(len(dI))], "domain": domain, "dI": dI,
                         "model": "base" if epoch == 0 else f"epoch-{epoch}", "epoch": epoch})


def test_scale_table_against_a_hand_computation():
    rng = np.random.default_rng(0)
    base = pd.concat([_scores(list(rng.normal(0, 1, 12)), 0), _scores(list(rng.normal(0, 1, 12)), 0, "factual")])
    adapters = {n: pd.concat([_scores(list(base[base.domain == d].dI + rng.normal(n / 30, 1, 12)), 5, d) for d in ("literary", "factual")]
                             + [_scores([99.0] * 12, 4)])  # another epoch: ignored
                for n in (10, 60)}
    t = scale_table(base, adapters, 5, "nats")
    assert list(zip(t.n_rows, t.domain)) == [(10, "factual"), (10, "literary"), (60, "factual"), (60, "literary")]
    for r in t.itertuples():
        a, b = adapters[r.n_rows], base
        x = (a[(a.epoch == 5) & (a.domain == r.domain)].set_index("id").dI - b[b.domain == r.domain].set_index("id").dI).to_numpy()
        assert r.n == 12 and r.delta == pytest.approx(sum(x) / 12)
        assert r.wilcoxon_p == pytest.approx(wilcoxon(x, alternative="greater").pvalue)
        assert r.ci_low < r.delta < r.ci_high
    with pytest.raises(ValueError, match="no scores at epoch 3"):
        scale_table(base, adapters, 3)


def _scale(full: tuple[float, float, float, float], at60: float, full_n: int = 94) -> pd.DataFrame:
    d, lo, hi, p = full
    rows = [{"n_rows": 10, "delta": 0.1, "ci_low": -1.0, "ci_high": 1.2, "wilcoxon_p": 0.4},
            {"n_rows": 60, "delta": at60, "ci_low": at60 - 1, "ci_high": at60 + 1, "wilcoxon_p": 0.04},
            {"n_rows": full_n, "delta": d, "ci_low": lo, "ci_high": hi, "wilcoxon_p": p}]
    return pd.DataFrame(rows).assign(domain="literary", unit="bits")


def test_scale_saturation_rule_each_outcome():
    assert C.rule_scale_saturation(_scale((2.0, 1.0, 3.0, 0.01), 1.5)).verdict == "consistent"
    o = C.rule_scale_saturation(_scale((2.0, 1.0, 3.0, 0.01), 0.5))
    assert o.verdict == "contradicted" and "still rising" in o.qualifier and "+0.50 bits at 60 rows" in o.found
    assert C.rule_scale_saturation(_scale((2.0, 1.0, 3.0, 0.01), 3.5)).verdict == "inconclusive"  # above the interval
    o = C.rule_scale_saturation(_scale((2.0, -0.2, 3.0, 0.08), 1.5))  # full-size effect not detected
    assert o.verdict == "inconclusive" and "nothing to saturate" in o.qualifier
    assert C.rule_scale_saturation(_scale((-1.0, -2.0, 0.0, 0.9), -1.0)).verdict == "inconclusive"
    assert C.rule_scale_saturation(_scale((2.0, 1.0, 3.0, 0.01), 1.5).query("n_rows != 60")).verdict == C.UNTESTABLE
    assert C.rule_scale_saturation(_scale((2.0, 1.0, 3.0, 0.01), 1.5, full_n=60).iloc[:2]).verdict == C.UNTESTABLE
    assert C.rule_scale_saturation(None).verdict == C.UNTESTABLE


def test_the_claims_table_judges_selection_and_scale_from_their_tables():
    """build_claims (notebook 10) gives the §6.6 and §4.4 rows from 05's selection and 09's scale tables, and the
    held-out selection can only be contradicted when the held-out control detected its effect (the declared gate)."""
    from tests.test_epoch_scoring import _selection

    t1 = pd.DataFrame([{"epoch": 5, "domain": dom, "n": 20, "delta": 0.1, "d_z": 0.1, "wilcoxon_p": 0.4, "unit": "bits"}
                       for dom in ("literary", "factual")])
    res = C.build_claims(t1, None, None, None, 5, scale=_scale((2.0, 1.0, 3.0, 0.01), 1.5),
                         selection=_selection(-1.0, -2.0, -0.1, 0.99)).set_index("id")
    assert res.loc["scale_saturation", "verdict"] == "consistent"
    assert res.loc["heldout_selection", "verdict"] == "inconclusive"  # excluded, but no held-out control: not contradicted
    sens = {"detected": True, "d_z": 0.9, "ci_low": 0.4, "ci_high": 1.4, "p": 0.001, "epoch": 5, "n": 20, "signal": "CoT judgments",
            "sentence": "s"}
    res = C.build_claims(t1, None, None, None, 5, selection=_selection(-1.0, -2.0, -0.1, 0.99), sensitivity=sens).set_index("id")
    assert res.loc["heldout_selection", "verdict"] == "contradicted"
    assert C.build_claims(t1, None, None, None, 5).set_index("id").loc["scale_saturation", "verdict"] == C.UNTESTABLE

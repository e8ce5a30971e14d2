"""Statistics against hand-computed values; KL properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cqa_utils import prescreen, stats


def test_paired_tests_hand_computed():
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lora = np.array([2.0, 4.0, 3.5, 7.0, 5.5])
    r = stats.paired_tests(lora, base)
    d = lora - base  # [1, 2, .5, 3, .5]
    assert r["delta"] == pytest.approx(1.4)
    sd = math.sqrt(((d - 1.4) ** 2).sum() / 4)  # 1.0840
    assert r["d_z"] == pytest.approx(1.4 / sd)
    sa, sb = lora.std(ddof=1), base.std(ddof=1)
    assert r["d_av"] == pytest.approx(1.4 / ((sa + sb) / 2))
    assert r["t"] == pytest.approx(1.4 / (sd / math.sqrt(5)))
    # exact one-sided Wilcoxon: all 5 differences positive, ranks sum W+ = 15 (with a tie of .5s: ranks 1.5,1.5,3,4,5)
    assert r["wilcoxon_W"] == pytest.approx(15.0)
    assert r["wilcoxon_p"] == pytest.approx(1 / 32, abs=0.02)  # normal approx with ties; exact would be 1/32
    stats.pingouin_check(lora, base, r)


def test_wilcoxon_exact_without_ties():
    base = np.zeros(6)
    lora = np.array([1.0, 2.0, 3.0, -4.0, 5.0, 6.0])
    r = stats.paired_tests(lora, base)
    # W+ = 1+2+3+5+6 = 17; W+ >= 17 iff the negative ranks sum to <= 4: {}, {1}, {2}, {3}, {4}, {1,2}, {1,3}
    assert r["wilcoxon_W"] == 17.0
    assert r["wilcoxon_p"] == pytest.approx(7 / 64)


def test_t_interval():
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    h = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert (lo, hi) == (pytest.approx(2 - h), pytest.approx(2 + h))


def test_delta_delta_i_table():
    ids = [f"i{k}" for k in range(6)]
    rows = [{"model": "base", "epoch": 0, "id": i, "domain": "literary" if k < 3 else "factual", "dI": float(k)} for k, i in enumerate(ids)]
    rows += [{"model": "epoch-2", "epoch": 2, "id": i, "domain": "literary" if k < 3 else "factual", "dI": float(k) + (k % 3 + 1)}
             for k, i in enumerate(ids)]
    items, table = stats.delta_delta_i(pd.DataFrame(rows), unit="nats")
    lit = table[table.domain == "literary"].iloc[0]
    assert lit.delta == pytest.approx(2.0) and lit.n == 3
    bits = stats.delta_delta_i(pd.DataFrame(rows), unit="bits")[1]
    assert bits[bits.domain == "literary"].iloc[0].delta == pytest.approx(2.0 / math.log(2))
    assert set(items.columns) >= {"dI_base", "dI_lora", "ddI"}


def test_kl_nonnegative_and_one_hot():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 6))
        q = rng.dirichlet(np.ones(k))
        p = prescreen.expert_distribution(k, int(rng.integers(k)), float(rng.uniform(0, 0.5)))
        assert prescreen.kl(p, q) >= -1e-12
        ch = int(rng.integers(k))
        assert prescreen.kl(prescreen.expert_distribution(k, ch, 0.0), q) == pytest.approx(-math.log(q[ch]))
    assert prescreen.kl([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_entropy_and_softmax():
    assert stats.binary_entropy_bits([0.0, 0.0]) == pytest.approx(1.0)
    assert stats.binary_entropy_bits([0.0, -100.0]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(stats.softmax([math.log(1), math.log(3)]), [0.25, 0.75])


def test_implied_t_p_matches_formula():
    paper = pd.DataFrame([{"epoch": 5, "literary_d": 0.5, "literary_wilcoxon_p": 0.041, "factual_d": -0.12, "factual_p": 0.689}])
    out = stats.implied_t_p(paper)
    lit = out[out.domain == "literary"].iloc[0]
    assert lit["t if d were d_z"] == pytest.approx(0.5 * math.sqrt(20))
    assert 0.01 < lit["one-sided t p if d were d_z"] < 0.03

"""Statistics against hand computations and independent implementations (enumeration, simulation, statsmodels)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.special import betainc

from cqa_utils.method import stats
from cqa_utils.method.config import PAPER_REPORTED_DIR

# ------------------------------------------------------------------ independent Wilcoxon by hand


def avg_ranks(values: list[float]) -> list[float]:
    """Ranks 1..n of ``values``, ties sharing the average of their positions (plain Python)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pratt_w_plus(d: list[float]) -> tuple[float, list[float]]:
    """Pratt: rank |d| with the zeros included, then sum the ranks of the positive d."""
    r = avg_ranks([abs(x) for x in d])
    return sum(rk for rk, x in zip(r, d) if x > 0), r


def exact_flip_p(d: list[float]) -> float:
    """P(W+ ≥ observed) over all 2^n sign assignments of the non-zero items' ranks."""
    w, r = pratt_w_plus(d)
    nz = [rk for rk, x in zip(r, d) if x != 0]
    hits = sum(sum(rk for rk, s in zip(nz, signs) if s) >= w - 1e-9 for signs in itertools.product((0, 1), repeat=len(nz)))
    return hits / 2 ** len(nz)


def pratt_normal_p(d: list[float]) -> float:
    """Normal approximation with Pratt zeros and tie correction, no continuity correction (by formula)."""
    n, z = len(d), sum(x == 0 for x in d)
    w, _ = pratt_w_plus(d)
    mean = (n * (n + 1) - z * (z + 1)) / 4
    nz = [abs(x) for x in d if x != 0]
    ties = sum(t**3 - t for t in (nz.count(v) for v in set(nz)))
    var = (n * (n + 1) * (2 * n + 1) - z * (z + 1) * (2 * z + 1)) / 24 - ties / 48
    return 0.5 * math.erfc((w - mean) / math.sqrt(var) / math.sqrt(2))


def test_wilcoxon_all_positive_n5_is_exactly_one_in_32():
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lora = np.array([2.0, 4.0, 3.5, 7.0, 5.5])  # Δ = [1, 2, .5, 3, .5]: a tie of .5s, ranks 1.5, 1.5, 3, 4, 5
    r = stats.paired_tests(lora, base)
    assert r["wilcoxon_W"] == 15.0
    assert r["wilcoxon_p"] == pytest.approx(1 / 32, abs=1e-12)
    assert r["wilcoxon_method"].startswith("exact conditional (all 2^n sign flips")
    d = lora - base
    sd = math.sqrt(((d - 1.4) ** 2).sum() / 4)
    assert r["delta"] == pytest.approx(1.4) and r["d_z"] == pytest.approx(1.4 / sd)
    assert r["d_av"] == pytest.approx(1.4 / ((lora.std(ddof=1) + base.std(ddof=1)) / 2))
    assert r["t"] == pytest.approx(1.4 / (sd / math.sqrt(5)))
    assert r["perm_p"] == pytest.approx(1 / 32, abs=1e-15) and r["perm_se"] == 0.0
    stats.pingouin_check(lora, base, r)


def test_wilcoxon_exact_without_ties():
    r = stats.paired_tests(np.array([1.0, 2.0, 3.0, -4.0, 5.0, 6.0]), np.zeros(6))
    # W+ = 17; W+ >= 17 iff the negative ranks sum to <= 4: {}, {1}, {2}, {3}, {4}, {1,2}, {1,3}
    assert r["wilcoxon_W"] == 17.0 and r["wilcoxon_method"] == "exact"
    assert r["wilcoxon_p"] == pytest.approx(7 / 64, abs=1e-12)


def test_wilcoxon_small_n_with_zeros_and_ties_matches_enumeration():
    d = [0.0, 0.7, -0.7, 1.2, 1.2, 2.5, -0.3, 3.1, 0.0, 1.9]
    r = stats.wilcoxon_greater(d)
    w, _ = pratt_w_plus(d)
    assert r["wilcoxon_W"] == pytest.approx(w) and r["n_zero"] == 2
    assert r["wilcoxon_p"] == pytest.approx(exact_flip_p(d), abs=1e-12)


N20_TIED = [0.0, 0.0, 0.5, 0.5, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, 2.0, -2.5, 3.0, 3.5, 0.25, 4.0, -0.75, 1.25, 2.75, 5.0]


def enumerate_w_plus_p(d: list[float]) -> float:
    """P(W+ ≥ observed) over all 2^n sign flips of the non-zero items' midranks, by a ±1 table (numpy, no DP)."""
    w, r = pratt_w_plus(d)
    nz = np.array([rk for rk, x in zip(r, d) if x != 0])
    bits = (np.arange(2**nz.size)[:, None] >> np.arange(nz.size)) & 1
    return float(((bits @ nz) >= w - 1e-9).mean())


def test_wilcoxon_n20_zeros_and_ties_exact_against_all_sign_flips():
    r = stats.wilcoxon_greater(N20_TIED)
    assert r["wilcoxon_method"].startswith("exact conditional")
    assert r["wilcoxon_W"] == pytest.approx(pratt_w_plus(N20_TIED)[0])
    assert r["wilcoxon_p"] == pytest.approx(enumerate_w_plus_p(N20_TIED), abs=1e-12)
    assert abs(r["wilcoxon_p"] - pratt_normal_p(N20_TIED)) > 1e-4  # not the normal approximation


def test_wilcoxon_exact_conditional_random_ties_and_zeros_by_enumeration():
    rng = np.random.default_rng(7)
    for n in (6, 11, 14, 16):
        d = list(rng.integers(-3, 5, n) * 0.5)  # many ties and some zeros
        if not any(d):
            continue
        assert stats.wilcoxon_greater(d)["wilcoxon_p"] == pytest.approx(enumerate_w_plus_p(d), abs=1e-12), d


def test_exact_conditional_equals_scipy_exact_without_ties():
    d = np.random.default_rng(4).normal(0.4, 1, 30)  # continuous: no ties, scipy's exact null applies
    ref = sps.wilcoxon(d, alternative="greater", method="exact").pvalue
    assert stats.signed_rank_exact_p(d) == pytest.approx(ref, abs=1e-12)


def test_wilcoxon_beyond_50_ties_normal_approximation_by_hand():
    d = N20_TIED * 3
    r = stats.wilcoxon_greater(d)
    assert r["wilcoxon_method"].startswith("normal approximation")
    assert r["wilcoxon_W"] == pytest.approx(pratt_w_plus(d)[0])
    assert r["wilcoxon_p"] == pytest.approx(pratt_normal_p(d), abs=1e-12)


def test_negative_effect_gives_p_above_half():
    r = stats.paired_tests(np.zeros(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert r["wilcoxon_p"] == 1.0 and r["perm_p"] == 1.0  # every flip has W+ >= 0 and sum >= -15
    rng = np.random.default_rng(3)
    d = rng.normal(-0.8, 1.0, 20)
    r = stats.paired_tests(d, np.zeros(20))
    assert r["wilcoxon_p"] > 0.5 and r["perm_p"] > 0.5 and r["t_p_one_sided"] > 0.5


def test_pingouin_check_raises_only_on_real_disagreement():
    rng = np.random.default_rng(0)
    base = rng.normal(size=20)
    lora = base + np.round(rng.normal(0.3, 1, 60), 1)[:20]  # rounded: ties
    lora[:2] = base[:2]  # and zeros
    r = stats.paired_tests(lora, base)
    assert r["wilcoxon_method"].startswith("exact conditional")
    stats.pingouin_check(lora, base, r)  # scipy cannot do the exact conditional test at n = 20: p is not compared
    big = rng.normal(size=60)
    lora, base = big + np.round(rng.normal(0.3, 1, 60), 1), big
    lora[:2] = base[:2]
    r = stats.paired_tests(lora, base)
    assert r["wilcoxon_method"].startswith("normal approximation")
    stats.pingouin_check(lora, base, r)
    flat = stats.paired_tests(np.full(4, 2.0), np.ones(4))  # no spread anywhere: d undefined on both sides
    stats.pingouin_check(np.full(4, 2.0), np.ones(4), flat)
    with pytest.raises(AssertionError, match="wilcoxon_p"):
        stats.pingouin_check(lora, base, r | {"wilcoxon_p": r["wilcoxon_p"] + 1e-6})


# ------------------------------------------------------------------ sign flips, bootstrap


def test_sign_flip_exact_matches_enumeration():
    d = np.array([0.3, -1.2, 2.0, 0.7, 0.7, -0.1, 1.5, 0.0])
    hits = sum(np.dot(s, d) >= d.sum() - 1e-12 for s in itertools.product((-1, 1), repeat=d.size))
    p, se, method = stats.sign_flip_p(d)
    assert p == pytest.approx(hits / 2**8, abs=1e-15) and se == 0.0 and method == "exact (256 sign flips)"


def test_sign_flip_n20_against_binomial():
    d = np.array([1.0] * 12 + [-1.0] * 8)  # sum 4; a flip's sum is 2·(number of +1) − 20 >= 4 iff >= 12 plus signs
    p, _, _ = stats.sign_flip_p(d)
    assert p == pytest.approx(sum(math.comb(20, k) for k in range(12, 21)) / 2**20, abs=1e-15)
    assert stats.sign_flip_p(np.arange(1.0, 21.0))[0] == 2.0**-20


def test_sign_flip_refuses_nan_and_inf():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not finite"):
            stats.sign_flip_p([bad, -1.0, -2.0, -3.0])
        with pytest.raises(ValueError, match="not finite"):
            stats.sign_flip_p([bad] + [-1.0] * 24, n_mc=1_000)
        with pytest.raises(ValueError, match="not finite"):
            stats.paired_tests([bad, 1.0, 2.0], [0.0, 0.0, 0.0])


def exact_fraction_flip_p(d: list[float]) -> float:
    """One-sided sign-flip p in exact rational arithmetic over all 2^n flips (ties are exact equalities)."""
    fr = [Fraction(x) for x in d]
    obs = sum(fr)
    return sum(sum(s * x for s, x in zip(sig, fr)) >= obs for sig in itertools.product((-1, 1), repeat=len(d))) / 2 ** len(d)


def test_sign_flip_ties_do_not_depend_on_scale():
    small = [k * 2.0**-13 for k in (1, 4, 3, -4, -3, -3, -4, -3)]  # ~1e-4, exactly representable
    d = [2.0**20, -(2.0**20)] + small  # ±1e6 beside them: the big pair must not swallow the small values' differences
    want = exact_fraction_flip_p(d)
    assert stats.sign_flip_p(d)[0] == pytest.approx(want, abs=1e-15)
    assert stats.sign_flip_p(small)[0] == pytest.approx(exact_fraction_flip_p(small), abs=1e-15)
    d_mc = d + [2.0**-13] * 15  # n = 25: Monte Carlo, same tie rule
    p, se, _ = stats.sign_flip_p(d_mc, n_mc=20_000, seed=2)
    rng = np.random.default_rng(9)
    fr = [Fraction(x) for x in d_mc]
    sims = [sum(x if s else -x for s, x in zip(rng.integers(0, 2, len(d_mc)), fr)) >= sum(fr) for _ in range(4_000)]
    ref = float(np.mean(sims))
    assert abs(p - ref) < 4 * math.sqrt(ref * (1 - ref) / 4_000) + 4 * se


def test_sign_flip_monte_carlo_beyond_20():
    d = np.array([1.0] * 15 + [-1.0] * 10)
    exact = sum(math.comb(25, k) for k in range(15, 26)) / 2**25
    p, se, method = stats.sign_flip_p(d, n_mc=50_000, seed=1)
    assert method.startswith("Monte Carlo") and se > 0 and abs(p - exact) < 4 * se
    assert stats.sign_flip_p(d, n_mc=50_000, seed=1) == (p, se, method)


def test_bootstrap_ci():
    assert stats.bootstrap_ci([2.0] * 10) == (2.0, 2.0)
    x = np.random.default_rng(5).normal(1.0, 2.0, 40)
    lo, hi = stats.bootstrap_ci(x)
    ref = sps.bootstrap((x,), np.mean, n_resamples=10_000, method="percentile", random_state=0).confidence_interval
    sd_mean = x.std(ddof=1) / math.sqrt(x.size)
    assert abs(lo - ref.low) < 0.1 * sd_mean and abs(hi - ref.high) < 0.1 * sd_mean
    assert stats.bootstrap_ci(x) == (lo, hi)  # seeded


def test_bootstrap_diff_ci():
    assert stats.bootstrap_diff_ci([3.0] * 5, [1.0] * 7) == (2.0, 2.0)
    lo, hi = stats.bootstrap_diff_ci([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.5, 0.5])
    assert -0.25 <= lo < 2.25 < hi <= 3.75  # resample means lie in [1, 4] and [0, .5]


# ------------------------------------------------------------------ multiplicity, power, equivalence


def test_holm_by_hand_and_against_statsmodels():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(2).uniform(0, 0.2, 9)
    np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_paper_table1_holm():
    t = stats.paper_table1_holm(pd.read_csv(PAPER_REPORTED_DIR / "table1.csv")).set_index(["domain", "epoch"])
    # literary p sorted: .041 .049 .062 .077 .095 .226 .273 times 7..1 -> .287 .294 .31 .308 .285 .452 .273, running max
    assert t.loc[("literary", 5), "Holm p"] == pytest.approx(7 * 0.041)
    assert t.loc[("literary", 4), "Holm p"] == pytest.approx(6 * 0.049)
    assert t.loc[("literary", 12), "Holm p"] == pytest.approx(5 * 0.062)
    assert t.loc[("literary", 2), "Holm p"] == pytest.approx(2 * 0.226)
    assert t.loc[("literary", 5), "significant at 0.05"] and not t["significant after Holm"].any()


def test_wilcoxon_null_distribution_by_hand():
    # n = 3: rank sums of the 8 subsets of {1,2,3}: 0,1,2,3,3,4,5,6
    np.testing.assert_allclose(stats._wilcoxon_null_sf(3), [8 / 8, 7 / 8, 6 / 8, 5 / 8, 3 / 8, 2 / 8, 1 / 8])
    sf = stats._wilcoxon_null_sf(12)  # against scipy's exact test: all-positive ranks but the smallest k negative
    d = np.arange(1.0, 13.0)
    d[:3] *= -1  # W+ = 78 − 6 = 72
    assert sf[72] == pytest.approx(sps.wilcoxon(d, alternative="greater", method="exact").pvalue, abs=1e-15)


def test_minimum_detectable_effect():
    t_mde = stats.t_mde(20)
    power = pytest.importorskip("statsmodels.stats.power").TTestPower()
    assert t_mde == pytest.approx(power.solve_power(nobs=20, alpha=0.05, power=0.8, alternative="larger"), abs=1e-4)
    w = stats.wilcoxon_mde(20, n_sim=10_000)
    assert 0.0 < w - t_mde < 0.06  # the Wilcoxon test needs slightly more (efficiency ~0.95 against t)
    assert stats.wilcoxon_power(w, n_sim=10_000) >= 0.8
    size = stats.wilcoxon_power(0.0, n_sim=20_000)
    sf = stats._wilcoxon_null_sf(20)
    attained = sf[np.flatnonzero(sf <= 0.05)[0]]
    assert abs(size - attained) < 4 * math.sqrt(attained * (1 - attained) / 20_000) and attained <= 0.05


def test_tost_has_no_default_bound():
    with pytest.raises(TypeError):
        stats.tost_dz(0.0, 20)  # the bound is declared in the criteria file, never defaulted here


def test_tost_against_simulation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40_000, 20)) + 0.3  # true d_z = +0.3: the upper null's boundary
    t_sim = x.mean(1) / x.std(1, ddof=1) * math.sqrt(20)
    for d_obs in (-0.1, 0.05, 0.5):  # where the exact test differs from a shifted central t by 0.007-0.017
        r = stats.tost_dz(d_obs, 20, 0.3)
        sim = (t_sim <= d_obs * math.sqrt(20)).mean()
        tol = 4 * math.sqrt(sim * (1 - sim) / t_sim.size)
        assert r["p_upper"] == pytest.approx(sim, abs=tol)
        assert r["p_lower"] == pytest.approx(((-t_sim) >= d_obs * math.sqrt(20)).mean(), abs=tol)  # mirror image
    assert stats.tost_dz(0.0, 20, 0.3)["power_at_zero"] == 0.0  # ±0.3 is narrower than n = 20 can resolve
    assert stats.tost_dz(0.0, 20, 0.3)["p_tost"] > 0.05
    r = stats.tost_dz(0.0, 200, 0.3)
    assert r["p_tost"] < 0.001 and 0.95 < r["power_at_zero"] < 1.0
    z = rng.standard_normal((4_000, 200))
    rate = np.mean([stats.tost_dz(float(v), 200, 0.3)["p_tost"] < 0.05 for v in z.mean(1) / z.std(1, ddof=1)])
    assert abs(rate - r["power_at_zero"]) < 0.02


# ------------------------------------------------------------------ two-sample tests


def test_mann_whitney_by_enumeration():
    x, y = [3.0, 5.0, 6.0], [1.0, 2.0, 4.0]
    r = stats.mann_whitney_greater(x, y)
    assert r["U"] == 8.0  # pairs with x > y: 2 + 3 + 3
    pool = x + y
    us = [sum(a > b for a in c for b in (v for k, v in enumerate(pool) if k not in idx))
          for idx in itertools.combinations(range(6), 3) for c in [[pool[k] for k in idx]]]
    assert r["p"] == pytest.approx(sum(u >= 8 for u in us) / len(us), abs=1e-12)


def test_welch_from_summary_matches_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(-0.8, 0.2, 20), rng.normal(-0.6, 0.3, 14)
    lo, hi, df = stats.welch_ci_from_summary(a.mean(), a.std(ddof=1), 20, b.mean(), b.std(ddof=1), 14)
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))


# ------------------------------------------------------------------ tables


def test_t_interval():
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    h = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2)
    assert (lo, hi) == (pytest.approx(2 - h), pytest.approx(2 + h))


def test_delta_logp_table_by_hand():
    base = pd.DataFrame({"id": list("abcde"), "domain": ["literary"] * 3 + ["news", "popsci"],
                         "logp_per_token": [-2.0, -3.0, -2.5, -1.0, -1.5]})
    lora = base.assign(logp_per_token=[-2.5, -3.1, -3.3, -1.2, -1.4])
    t = stats.delta_logp_table(base, lora, unit="nats").set_index("domain")
    d = [-0.5, -0.1, -0.8]  # literary per-passage Δ; mean -0.4667, sd by hand
    m = sum(d) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    h = 4.302652729911275 * sd / math.sqrt(3)
    lit = t.loc["literary"]
    assert lit.n == 3 and lit.delta == pytest.approx(m) and lit.sd_delta == pytest.approx(sd)
    assert (lit.ci_low, lit.ci_high) == (pytest.approx(m - h), pytest.approx(m + h))
    fac = t.loc["factual combined"]
    h2 = 12.706204736174707 * math.sqrt(((-0.2 + 0.05) ** 2 + (0.1 + 0.05) ** 2) / 1) / math.sqrt(2)  # t(0.975, 1)
    assert fac.delta == pytest.approx(-0.05) and fac.ci_high == pytest.approx(-0.05 + h2)
    assert math.isnan(t.loc["news", "ci_low"])  # one passage: no interval
    bits = stats.delta_logp_table(base, lora, unit="bits").set_index("domain")
    assert bits.loc["literary", "delta"] == pytest.approx(m / math.log(2))


def _pair_scores(n: int, shift: dict[str, float], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for dom in ("literary", "factual"):
        for k in range(n):
            dI = float(rng.normal())
            rows.append({"model": "base", "epoch": 0, "id": f"{dom}{k}", "domain": dom, "dI": dI})
            for e in (2, 5):
                rows.append({"model": f"epoch-{e}", "epoch": e, "id": f"{dom}{k}", "domain": dom,
                             "dI": dI + round(float(rng.normal(shift[dom], 1)), 1) * (k % 5 != 0)})
    return pd.DataFrame(rows)


def test_delta_delta_i_table():
    ids = [f"i{k}" for k in range(6)]
    rows = [{"model": "base", "epoch": 0, "id": i, "domain": "literary" if k < 3 else "factual", "dI": float(k)} for k, i in enumerate(ids)]
    rows += [{"model": "epoch-2", "epoch": 2, "id": i, "domain": "literary" if k < 3 else "factual", "dI": float(k) + (k % 3 + 1)}
             for k, i in enumerate(ids)]
    items, table = stats.delta_delta_i(pd.DataFrame(rows), unit="nats")
    lit = table[table.domain == "literary"].iloc[0]
    assert lit.delta == pytest.approx(2.0) and lit.n == 3 and lit.unit == "nats"
    bits = stats.delta_delta_i(pd.DataFrame(rows), unit="bits")[1]
    assert bits[bits.domain == "literary"].iloc[0].delta == pytest.approx(2.0 / math.log(2))
    assert set(items.columns) >= {"dI_base", "dI_lora", "ddI"}


def test_delta_delta_i_n20_with_zeros_and_ties_runs_and_adjusts():
    items, t = stats.delta_delta_i(_pair_scores(20, {"literary": 0.6, "factual": 0.0}), unit="nats")
    assert len(t) == 4 and (t.n == 20).all() and (t.n_zero >= 4).all()
    assert t.wilcoxon_method.str.startswith("exact conditional").all()
    assert (t.perm_method == "exact (1048576 sign flips)").all() and (t.wilcoxon_zero_method == "pratt").all()
    assert ((t.ci_low <= t.delta) & (t.delta <= t.ci_high)).all()
    for _, g in t.groupby("domain"):
        np.testing.assert_allclose(g.holm_p, stats.holm(g.wilcoxon_p.to_numpy()))
    assert len(items) == 80


def test_side_by_side_tables_carry_units():
    paper1 = pd.read_csv(PAPER_REPORTED_DIR / "table1.csv")
    _, t1 = stats.delta_delta_i(_pair_scores(6, {"literary": 1.0, "factual": 0.0}), unit="bits")
    s1 = stats.side_by_side_table1(t1, paper1)
    assert (s1["unit"] == "bits").all() and s1["unit paper"].str.contains("not stated").all()
    assert s1.set_index("epoch").loc[5, "literary p"] == pytest.approx(t1.set_index(["domain", "epoch"]).loc[("literary", 5), "wilcoxon_p"])
    assert math.isnan(s1.set_index("epoch").loc[3, "literary p"])  # epoch 3 not scored here
    paper2 = pd.read_csv(PAPER_REPORTED_DIR / "table2.csv")
    t2 = pd.DataFrame([{"domain": "literary", "n": 3, "base_mean": -1.0, "lora_mean": -1.5, "delta": -0.5,
                        "ci_low": -0.9, "ci_high": -0.1, "unit": "nats"}])
    s2 = stats.side_by_side_table2(t2, paper2)
    assert (s2["unit"] == "nats/token").all() and (s2["unit paper"] == "bits/token (stated in §4.5)").all()
    assert list(s2.domain) == ["literary", "news", "popsci", "factual combined"]  # the paper's row order


def test_entropy_and_softmax():
    assert stats.binary_entropy_bits([0.0, 0.0]) == pytest.approx(1.0)
    assert stats.binary_entropy_bits([0.0, -100.0]) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(stats.softmax([math.log(1), math.log(3)]), [0.25, 0.75])


def test_implied_t_p_matches_formula():
    paper = pd.DataFrame([{"epoch": 5, "literary_d": 0.5, "literary_wilcoxon_p": 0.041, "factual_d": -0.12, "factual_p": 0.689}])
    lit = stats.implied_t_p(paper).iloc[0]
    assert lit["t if d were d_z"] == pytest.approx(0.5 * math.sqrt(20))
    t, df = 0.5 * math.sqrt(20), 19  # one-sided t tail through the regularised incomplete beta function
    assert lit["one-sided t p if d were d_z"] == pytest.approx(0.5 * betainc(df / 2, 0.5, df / (df + t * t)), abs=1e-12)


def test_power_and_mde_when_no_outcome_can_reach_alpha():
    # at n = 4 the smallest exact one-sided Wilcoxon p is 1/16 > 0.05: nothing is detectable
    assert stats.wilcoxon_power(3.0, n=4) == 0.0 and stats.wilcoxon_mde(n=4) == float("inf")
    assert stats.wilcoxon_power(3.0, n=5) > 0.5  # at n = 5, all five positive gives p = 1/32


def test_dz_ci_against_simulated_tails_and_the_t_test():
    lo, hi = stats.dz_ci(0.3, 20)
    rng = np.random.default_rng(0)
    for delta, tail in ((lo, "upper"), (hi, "lower")):  # at each bound, the observed t sits at a 2.5 % tail
        x = rng.standard_normal((40_000, 20)) + delta
        t = x.mean(1) / x.std(1, ddof=1) * math.sqrt(20)
        share = (t >= 0.3 * math.sqrt(20)).mean() if tail == "upper" else (t <= 0.3 * math.sqrt(20)).mean()
        assert share == pytest.approx(0.025, abs=4 * math.sqrt(0.025 * 0.975 / 40_000))
    # the interval excludes 0 exactly when the two-sided t-test rejects at 0.05
    for d in (0.40, 0.48, 0.50):
        p2 = 2 * sps.t.sf(d * math.sqrt(20), 19)
        assert (stats.dz_ci(d, 20)[0] > 0) == (p2 < 0.05)
    with pytest.raises(ValueError):
        stats.dz_ci(math.nan, 20)


def test_mann_whitney_power_against_noether():
    # Noether's approximation: Φ(sqrt(12·n1·n2/(n1+n2+1))·(Φ(δ/√2) − 1/2) − z_α)
    for delta in (0.62, 1.0):
        pp = sps.norm.cdf(delta / math.sqrt(2))
        noether = sps.norm.cdf(math.sqrt(12 * 400 / 41) * (pp - 0.5) - sps.norm.isf(0.05))
        assert stats.mann_whitney_power(delta, 20, 20) == pytest.approx(noether, abs=0.04)
    assert stats.mann_whitney_power(0.0, 20, 20) == pytest.approx(0.05, abs=0.015)

"""Δ(ΔI) and Δlog P statistics (§4.1, §4.5, §5.1), with the uncertainty and multiplicity the paper omits.

Units: every input is in nats; ``unit="bits"`` divides log-probabilities by ln 2 before any
statistic (p-values and Cohen's d do not depend on the unit, means and intervals do).

What each test is, exactly (so another tool can recompute it):

* Wilcoxon signed-rank, one-sided (H1: fine-tuned > base), ``zero_method="pratt"`` and no continuity
  correction; for n ≤ 50 the p-value is exact: scipy's exact null distribution when no |Δ| is zero or
  tied, else the exact conditional distribution over all 2^n sign flips of the midranks (counted by a
  dynamic programme); beyond 50, scipy's tie-corrected normal approximation. The column
  ``wilcoxon_method`` names which one ran.
* Sign-flip permutation test of the mean (one-sided): exact over all 2^n flips for n ≤ 20, Monte Carlo
  (seeded, with its standard error) beyond; ties decided relative to the values summed, not the scale.
* NaN or inf differences raise ValueError: they never become a p-value.
* Percentile bootstrap 95 % interval of the mean (10,000 resamples, seeded).
* Holm's step-down adjustment over the sweep epochs of one domain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.optimize import brentq

LN2 = math.log(2.0)
ALPHA = 0.05
ZERO_METHOD = "pratt"
N_BOOT = 10_000
EXACT_FLIP_MAX_N = 20
EXACT_SIGNED_RANK_MAX_N = 50
N_FLIP_MC = 100_000
PAPER_UNIT_TABLE1 = "not stated (nats or bits; 1 nat = 1.443 bits)"
PAPER_UNIT_TABLE2 = "bits/token (stated in §4.5)"


def unit_factor(unit: str) -> float:
    """Multiplier from nats to ``unit``."""
    if unit == "nats":
        return 1.0
    if unit == "bits":
        return 1.0 / LN2
    raise ValueError(f"unknown unit {unit!r}: expected 'bits' or 'nats'")


# ------------------------------------------------------------------------------------------ one-sample tests

def _check_finite(d: np.ndarray, what: str) -> None:
    """Refuse NaN and ±inf: a p-value is never computed from them."""
    bad = np.flatnonzero(~np.isfinite(d))
    if bad.size:
        raise ValueError(f"{what}: differences not finite (NaN or inf) at positions {bad.tolist()} of {d.size}; "
                         "no p-value is computed from them")


def _wilcoxon_method(d: np.ndarray) -> tuple[Any, str]:
    """The scipy ``method`` to request for differences ``d`` (None: this module's exact conditional test), and its name."""
    nz = np.abs(d[d != 0])
    ties_or_zeros = nz.size < d.size or np.unique(nz).size < nz.size
    if not ties_or_zeros and d.size <= EXACT_SIGNED_RANK_MAX_N:
        return "exact", "exact"
    if d.size <= EXACT_SIGNED_RANK_MAX_N:
        return None, "exact conditional (all 2^n sign flips of the midranks; zeros or ties)"
    return "asymptotic", "normal approximation (tie-corrected, no continuity correction)"


def _pratt_ranks(d: np.ndarray) -> np.ndarray:
    """Midranks of |d| with the zeros included in the ranking (Pratt)."""
    return sps.rankdata(np.abs(d))


def signed_rank_exact_p(d: Sequence[float]) -> float:
    """Exact one-sided p = P(W+ ≥ observed) under the conditional null, with Pratt zeros and midranks.

    Given the observed |d|, every non-zero item's sign is +/− with probability 1/2 under H0; the zeros
    carry no sign. Midranks are multiples of 1/2, so doubled they are integers and the distribution of
    2·W+ over all 2^n sign flips is counted by a dynamic programme over rank sums (n·(n+1) + 1 cells,
    counts exact in float64 up to n = 52).
    """
    d = np.asarray(d, float)
    _check_finite(d, "signed_rank_exact_p")
    r2 = np.rint(2 * _pratt_ranks(d)).astype(int)
    w2 = int(r2[d > 0].sum())
    counts = np.zeros(int(r2.sum()) + 1)
    counts[0] = 1.0
    for k in r2[d != 0]:
        counts[k:] = counts[k:] + counts[:-k].copy()
    return float(counts[w2:].sum() / counts.sum())


def wilcoxon_greater(d: Sequence[float]) -> dict[str, Any]:
    """One-sided Wilcoxon signed-rank test of H1: the differences ``d`` lie above 0.

    ``zero_method="pratt"``: an item whose Δ is exactly 0 (fine-tuning left it unchanged) stays in the
    ranking, so it still counts toward n and the other items' ranks are taken relative to the whole
    sample; Wilcox's rule (scipy's default) would drop it and test the rest as if it had never been
    observed. With no zeros (the usual case for continuous log-probabilities) both rules agree.
    No continuity correction. Exact for n ≤ 50: scipy's exact null without zeros or ties, else the exact
    conditional distribution (:func:`signed_rank_exact_p`); the tie-corrected normal approximation beyond.
    Returns W+ (sum of positive ranks), p, the method used and the zero count. NaN or inf: ValueError.
    """
    d = np.asarray(d, float)
    _check_finite(d, "wilcoxon_greater")
    n_zero = int((d == 0).sum())
    if n_zero == d.size:
        return {"wilcoxon_W": math.nan, "wilcoxon_p": math.nan, "wilcoxon_method": "no non-zero differences",
                "n_zero": n_zero}
    method, name = _wilcoxon_method(d)
    if method is None:
        w = float(_pratt_ranks(d)[d > 0].sum())
        return {"wilcoxon_W": w, "wilcoxon_p": signed_rank_exact_p(d), "wilcoxon_method": name, "n_zero": n_zero}
    r = sps.wilcoxon(d, zero_method=ZERO_METHOD, correction=False, alternative="greater", method=method)
    return {"wilcoxon_W": float(r.statistic), "wilcoxon_p": float(r.pvalue), "wilcoxon_method": name, "n_zero": n_zero}


def _flipped_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every subset F of the items (bits of 0..2^k−1): Σ_F x and Σ_F |x|."""
    bits = ((np.arange(2 ** x.size)[:, None] >> np.arange(x.size)) & 1).astype(float)
    return bits @ x, bits @ np.abs(x)


def sign_flip_p(d: Sequence[float], n_mc: int = N_FLIP_MC, seed: int = 0) -> tuple[float, float, str]:
    """One-sided sign-flip permutation p of mean(d) > 0: (p, its standard error, method).

    Under H0 (differences symmetric about 0) every sign vector is equally likely. Flipping the items of a
    set F gives the sum Σd − 2·Σ_F d, which is ≥ the observed Σd iff Σ_F d ≤ 0. Ties are decided without
    reference to the data's scale: Σ_F d counts as 0 when it is within rounding of the values it adds
    (|Σ_F d| ≤ 4·n·ε·Σ_F |d|), so ±1e6 beside 1e-4 does not blur the small values. For n ≤ 20 all 2^n
    subsets are enumerated (two halves added by broadcasting), p = #/2^n, se = 0. Beyond, ``n_mc`` seeded
    random flips: p = (1 + #)/(n_mc + 1), se = sqrt(p(1 − p)/n_mc). NaN or inf in ``d``: ValueError.
    """
    d = np.asarray(d, float)
    _check_finite(d, "sign_flip_p")
    n = d.size
    rel = 4 * n * np.finfo(float).eps
    if n <= EXACT_FLIP_MAX_N:
        h = n // 2
        (sa, ma), (sb, mb) = _flipped_sums(d[:h]), _flipped_sums(d[h:])
        hits = (sa[:, None] + sb[None, :]) <= rel * (ma[:, None] + mb[None, :])
        return float(hits.sum() / 2**n), 0.0, f"exact ({2**n} sign flips)"
    rng = np.random.default_rng(seed)
    count, left = 0, n_mc
    while left:
        b = min(left, 20_000)
        flipped = rng.integers(0, 2, (b, n)).astype(float)
        count += int((flipped @ d <= rel * (flipped @ np.abs(d))).sum())
        left -= b
    p = (1 + count) / (n_mc + 1)
    return p, math.sqrt(p * (1 - p) / n_mc), f"Monte Carlo ({n_mc} sign flips, seed {seed})"


def bootstrap_ci(x: Sequence[float], level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``n_boot`` resamples with replacement, seeded)."""
    x = np.asarray(x, float)
    if x.size < 2:
        return math.nan, math.nan
    means = x[np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_tests(lora: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """Δ = lora − base per item: Wilcoxon (see :func:`wilcoxon_greater`), sign-flip p, bootstrap CI, t, d.

    d_z = mean(Δ)/sd(Δ); d_av = mean(Δ)/((sd_lora+sd_base)/2) (Lakens 2013); d_rms uses
    sqrt((sd_lora²+sd_base²)/2), which is what pingouin calls Cohen's d for paired data.
    """
    a, b = np.asarray(lora, float), np.asarray(base, float)
    d = a - b
    _check_finite(d, "paired_tests")
    sd_d, sd_a, sd_b = d.std(ddof=1), a.std(ddof=1), b.std(ddof=1)
    t2, t1 = sps.ttest_rel(a, b), sps.ttest_rel(a, b, alternative="greater")
    perm_p, perm_se, perm_method = sign_flip_p(d)
    lo, hi = bootstrap_ci(d)
    return {
        "n": d.size, "mean_base": b.mean(), "mean_lora": a.mean(), "delta": d.mean(), "sd_delta": sd_d,
        **wilcoxon_greater(d), "wilcoxon_zero_method": ZERO_METHOD,
        "perm_p": perm_p, "perm_se": perm_se, "perm_method": perm_method, "ci_low": lo, "ci_high": hi,
        "t": float(t2.statistic), "t_p_two_sided": float(t2.pvalue), "t_p_one_sided": float(t1.pvalue),
        "d_z": d.mean() / sd_d if sd_d > 0 else math.nan,
        "d_av": d.mean() / ((sd_a + sd_b) / 2) if sd_a + sd_b > 0 else math.nan,
        "d_rms": d.mean() / math.sqrt((sd_a**2 + sd_b**2) / 2) if sd_a + sd_b > 0 else math.nan,
    }


def pingouin_check(lora: Sequence[float], base: Sequence[float], ours: dict[str, Any], tol: float = 1e-9) -> dict[str, float]:
    """Recompute p-values and effect sizes with pingouin under the same settings; raise if they differ.

    A consistency check of how scipy is called, not an independent computation: pingouin's Wilcoxon
    and t-test call scipy. It is run with ``correction=False`` and the same ``zero_method`` and
    ``method`` as :func:`wilcoxon_greater` (pingouin's default adds a continuity correction, which
    changes the normal-approximation p). With zeros or ties at 13 < n ≤ 50 scipy offers no exact
    conditional test, so the Wilcoxon p is not compared there. The independent checks are in the tests.
    """
    import pingouin as pg  # deferred: pingouin is slow to import and only this check needs it

    a, b = np.asarray(lora, float), np.asarray(base, float)
    got = {
        "t_p_two_sided": float(pg.ttest(a, b, paired=True)["p_val"].iloc[0]),
        "d_z": float(pg.compute_effsize(a, b, paired=True, eftype="cohen_dz")) if ours["sd_delta"] > 0 else math.nan,
        "d_rms": float(pg.compute_effsize(a, b, paired=True, eftype="cohen")),
        "wilcoxon_p": math.nan,
    }
    method, _ = _wilcoxon_method(a - b)
    if method is None and (a - b).size <= 13:  # scipy's permutation test enumerates every flip up to 2^13
        method = sps.PermutationMethod()
    if method is None:  # scipy has no exact conditional test at this n: p is not compared (tested by enumeration)
        got.pop("wilcoxon_p")
    elif (a != b).any():
        got["wilcoxon_p"] = float(pg.wilcoxon(a, b, alternative="greater", correction=False, zero_method=ZERO_METHOD,
                                              method=method)["p_val"].iloc[0])
    for k, v in got.items():  # inf and nan both mean "undefined" (no spread): pingouin says inf where we say nan
        if math.isfinite(v) != math.isfinite(ours[k]) or (math.isfinite(v) and not abs(v - ours[k]) <= tol * max(1.0, abs(v))):
            raise AssertionError(f"pingouin and scipy disagree on {k}: {v!r} vs {ours[k]!r}")
    return got


# ------------------------------------------------------------------------------------------ multiplicity, power

def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaNs are kept and not counted among the m tests).

    Sorted ascending, p_(i) becomes max over j ≤ i of min(1, (m − j + 1)·p_(j)).
    """
    p = np.asarray(p, float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def paper_table1_holm(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 Wilcoxon p-values, Holm-adjusted over its sweep epochs within each domain.

    Shows whether a p-value survives having picked the best of the sweep epochs (7 in the paper).
    """
    rows = []
    for dom, col in (("literary", "literary_wilcoxon_p"), ("factual", "factual_p")):
        adj = holm(paper[col].to_numpy(float))
        rows += [{"epoch": int(e), "domain": dom, "Wilcoxon p (paper)": float(p), "Holm p": float(h),
                  "significant at 0.05": bool(p < ALPHA), "significant after Holm": bool(h < ALPHA),
                  "m (epochs)": len(paper)} for e, p, h in zip(paper.epoch, paper[col], adj)]
    return pd.DataFrame(rows)


def _wilcoxon_null_sf(n: int) -> np.ndarray:
    """P(W+ ≥ w) for w = 0..n(n+1)/2 under H0 (no ties), by counting subsets of {1..n} per rank sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts[::-1].cumsum()[::-1] / 2.0**n


def _walsh_positive(x: np.ndarray) -> np.ndarray:
    """W+ of each row of ``x`` (continuous data, no ties): the sum of the ranks of |x| over positive x."""
    ranks = np.abs(x).argsort(1).argsort(1) + 1
    return (ranks * (x > 0)).sum(1)


def _wilcoxon_critical(n: int, alpha: float) -> int | None:
    """The smallest W+ whose exact one-sided p is ≤ ``alpha`` (None when no W+ is: n ≤ 4 at α = 0.05)."""
    hit = np.flatnonzero(_wilcoxon_null_sf(n) <= alpha)
    return int(hit[0]) if hit.size else None


def wilcoxon_power(d_z: float, n: int = 20, alpha: float = ALPHA, n_sim: int = 20_000, seed: int = 0) -> float:
    """Simulated power of the exact one-sided Wilcoxon test at level ``alpha`` for N(d_z, 1) differences
    (0 when n is too small for any outcome to reach ``alpha``)."""
    crit = _wilcoxon_critical(n, alpha)
    if crit is None:
        return 0.0
    z = np.random.default_rng(seed).standard_normal((n_sim, n))
    return float((_walsh_positive(z + d_z) >= crit).mean())


def wilcoxon_mde(n: int = 20, alpha: float = ALPHA, power: float = 0.8, n_sim: int = 20_000, seed: int = 0) -> float:
    """Smallest d_z the exact one-sided Wilcoxon test detects with ``power``, by simulation and bisection.

    Differences are N(d_z, 1); the same seeded draws are shifted for every candidate d_z, and W+ only
    grows with a shift (it counts the positive Walsh averages), so the simulated power is monotone and
    bisection is exact up to the simulation error (about ±0.01 in d_z at 20,000 draws). Infinite when n is
    too small for any outcome to reach ``alpha`` (the smallest exact p at n = 4 is 1/16).
    """
    crit = _wilcoxon_critical(n, alpha)
    if crit is None:
        return math.inf
    z = np.random.default_rng(seed).standard_normal((n_sim, n))
    lo, hi = 0.0, 4.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if (_walsh_positive(z + mid) >= crit).mean() >= power else (mid, hi)
    return hi


def t_mde(n: int = 20, alpha: float = ALPHA, power: float = 0.8) -> float:
    """Smallest d_z a one-sided paired t-test detects with ``power`` (noncentral t with λ = d_z·√n)."""
    crit = sps.t.isf(alpha, n - 1)
    return float(brentq(lambda d: sps.nct.sf(crit, n - 1, d * math.sqrt(n)) - power, 0.0, 10.0))


def tost_dz(d_z: float, n: int, bound: float, alpha: float = ALPHA) -> dict[str, float]:
    """Equivalence test (TOST) of |δ_z| < ``bound`` from an observed d_z of n paired differences.

    ``bound`` has no default: the claims take it from the declared criteria (``data/claims_criteria.csv``).

    Exact for bounds stated in d_z units: t = d_z·√n follows a noncentral t with n − 1 df and
    noncentrality δ·√n, so p_lower = P(T ≥ t | δ = −bound), p_upper = P(T ≤ t | δ = +bound) and the
    TOST p is their maximum. ``power`` is the chance of showing equivalence when δ = 0 exactly.
    """
    df, lam, t = n - 1, bound * math.sqrt(n), d_z * math.sqrt(n)
    p_lower, p_upper = float(sps.nct.sf(t, df, -lam)), float(sps.nct.cdf(t, df, lam))
    c_lo, c_hi = sps.nct.isf(alpha, df, -lam), sps.nct.ppf(alpha, df, lam)
    power = max(0.0, float(sps.t.cdf(c_hi, df) - sps.t.cdf(c_lo, df)))
    return {"p_lower": p_lower, "p_upper": p_upper, "p_tost": max(p_lower, p_upper), "power_at_zero": power,
            "bound": bound, "n": n}


def dz_ci(d_z: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact confidence interval of the standardized mean difference δ_z from an observed d_z of n pairs.

    t = d_z·√n follows a noncentral t with n − 1 df and noncentrality δ·√n; the bounds are the δ at which
    the observed t sits at the upper and lower (1 − level)/2 tails (Steiger & Fouladi's inversion, by root
    finding). Far in the tails scipy's noncentral-t cdf returns NaN; there it is 0 or 1.
    """
    if not math.isfinite(d_z) or n < 2:
        raise ValueError(f"dz_ci: d_z = {d_z!r} with n = {n} has no interval")
    df, t, a = n - 1, d_z * math.sqrt(n), (1 - level) / 2

    def cdf(nc: float) -> float:
        v = float(sps.nct.cdf(t, df, nc))
        return v if math.isfinite(v) else float(nc < t)

    half = 8 * math.sqrt(1 + t * t / (2 * df))  # ~8 standard errors of the noncentrality either side of t

    def bound(q: float) -> float:  # the cdf falls as the noncentrality grows
        return brentq(lambda nc: cdf(nc) - q, t - half, t + half) / math.sqrt(n)

    return float(bound(1 - a)), float(bound(a))


def mann_whitney_power(shift_sd: float, n1: int, n2: int, alpha: float = ALPHA, n_sim: int = 4_000,
                       seed: int = 0) -> float:
    """Simulated power of :func:`mann_whitney_greater` at level ``alpha`` when x ~ N(shift_sd, 1), y ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n_sim, n1)) + shift_sd, rng.standard_normal((n_sim, n2))
    return float((sps.mannwhitneyu(x, y, alternative="greater", axis=1).pvalue < alpha).mean())


# ------------------------------------------------------------------------------------------ two-sample

def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """One-sided Mann–Whitney U test of H1: x tends to exceed y (scipy; exact when small and untied)."""
    r = sps.mannwhitneyu(np.asarray(x, float), np.asarray(y, float), alternative="greater")
    return {"U": float(r.statistic), "p": float(r.pvalue)}


def bootstrap_diff_ci(x: Sequence[float], y: Sequence[float], level: float = 0.95, n_boot: int = N_BOOT,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(x) − mean(y), each sample resampled on its own (seeded)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    diff = x[rng.integers(0, x.size, (n_boot, x.size))].mean(1) - y[rng.integers(0, y.size, (n_boot, y.size))].mean(1)
    lo, hi = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def welch_ci_from_summary(m1: float, sd1: float, n1: int, m2: float, sd2: float, n2: int,
                          level: float = 0.95) -> tuple[float, float, float]:
    """Welch t-interval of mean1 − mean2 from each sample's mean, sd and n: (low, high, df)."""
    v1, v2 = sd1**2 / n1, sd2**2 / n2
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    h = sps.t.ppf(0.5 + level / 2, df) * math.sqrt(v1 + v2)
    return m1 - m2 - h, m1 - m2 + h, df


# ------------------------------------------------------------------------------------------ Table 1

def item_deltas(scores: pd.DataFrame, unit: str = "bits") -> pd.DataFrame:
    """Per (epoch, item): ΔI of the base and of the checkpoint, and Δ(ΔI), in ``unit``.

    ``scores`` has one row per (model, item) with columns ``model`` ("base" or "epoch-N"),
    ``epoch`` (0 for base), ``id``, ``domain`` and ``dI`` (nats).
    """
    f = unit_factor(unit)
    base = scores[scores.model == "base"].set_index("id")
    items = []
    for epoch, g in scores[scores.model != "base"].groupby("epoch"):
        g = g.set_index("id")
        for dom in sorted(g.domain.unique()):
            ids = g.index[g.domain == dom]
            lo, ba = g.loc[ids, "dI"].to_numpy() * f, base.loc[ids, "dI"].to_numpy() * f
            items.extend({"epoch": int(epoch), "id": i, "domain": dom, "dI_base": x, "dI_lora": y, "ddI": y - x}
                         for i, x, y in zip(ids, ba, lo))
    return pd.DataFrame(items, columns=["epoch", "id", "domain", "dI_base", "dI_lora", "ddI"])


def delta_delta_i(scores: pd.DataFrame, unit: str = "bits", check: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-item Δ(ΔI) (see :func:`item_deltas`) and the per-(epoch, domain) summary (Table 1).

    Table 1 columns: epoch, domain, n, mean_base, mean_lora, delta, sd_delta, wilcoxon_W, wilcoxon_p,
    wilcoxon_method, n_zero, wilcoxon_zero_method, perm_p, perm_se, perm_method, ci_low, ci_high
    (bootstrap 95 % of the mean Δ), t, t_p_two_sided, t_p_one_sided, d_z, d_av, d_rms, holm_p (Wilcoxon p
    Holm-adjusted over the epochs of the domain), unit. ``check`` runs :func:`pingouin_check` per row.
    """
    items = item_deltas(scores, unit)
    rows = []
    for (epoch, dom), g in items.groupby(["epoch", "domain"], sort=True):
        res = paired_tests(g.dI_lora.to_numpy(), g.dI_base.to_numpy())
        if check:
            pingouin_check(g.dI_lora.to_numpy(), g.dI_base.to_numpy(), res)
        rows.append({"epoch": int(epoch), "domain": dom, **res})
    table = pd.DataFrame(rows)
    if len(table):
        table["holm_p"] = table.groupby("domain").wilcoxon_p.transform(lambda p: holm(p.to_numpy()))
        table["unit"] = unit
    return items, table


# ------------------------------------------------------------------------------------------ Table 2

def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Symmetric t-interval of the mean (the form of the paper's Table 2 intervals)."""
    x = np.asarray(x, float)
    h = sps.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return x.mean() - h, x.mean() + h


def delta_logp_table(base: pd.DataFrame, lora: pd.DataFrame, unit: str = "bits") -> pd.DataFrame:
    """Table 2: per-token log P of each passage, base vs LoRA, for literary, news, popsci, factual combined.

    Columns: domain, n, base_mean, lora_mean, delta, sd_delta (sd of the per-passage Δ), ci_low, ci_high
    (symmetric 95 % t-interval of the mean Δ).
    """
    f = unit_factor(unit)
    m = base.merge(lora, on=["id", "domain"], suffixes=("_base", "_lora"))
    groups: list[tuple[str, Any]] = [(d, m.domain == d) for d in ("literary", "news", "popsci")]
    groups.append(("factual combined", m.domain.isin(["news", "popsci"])))
    rows = []
    for name, sel in groups:
        g = m[sel]
        if g.empty:
            continue
        b, lo = g.logp_per_token_base.to_numpy() * f, g.logp_per_token_lora.to_numpy() * f
        two = len(g) > 1
        lo_ci, hi_ci = t_interval(lo - b) if two else (math.nan, math.nan)
        rows.append({"domain": name, "n": len(g), "base_mean": b.mean(), "lora_mean": lo.mean(), "delta": (lo - b).mean(),
                     "sd_delta": (lo - b).std(ddof=1) if two else math.nan, "ci_low": lo_ci, "ci_high": hi_ci})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ distributions

def softmax(logp: Sequence[float]) -> np.ndarray:
    """Normalise log-scores over a candidate set."""
    z = np.asarray(logp, float)
    p = np.exp(z - z.max())
    return p / p.sum()


def binary_entropy_bits(logp: Sequence[float]) -> float:
    """Entropy (bits) of the distribution obtained by normalising log-scores over the candidates."""
    p = softmax(logp)
    return float(-(p * np.log2(np.clip(p, 1e-300, 1))).sum())


# ------------------------------------------------------------------------------------------ beside the paper

def side_by_side_table1(table1: pd.DataFrame, paper: pd.DataFrame, unit: str | None = None) -> pd.DataFrame:
    """Table 1 in the paper's layout, this run's value beside the paper's for each cell, with units.

    ``unit``: this run's unit of Δ(ΔI) (default: table1's ``unit`` column, else bits). The paper does
    not state the unit of its Δ(ΔI); the ``unit paper`` column says so.
    """
    unit = unit or (str(table1["unit"].iloc[0]) if "unit" in table1 and len(table1) else "bits")
    t = table1.set_index(["domain", "epoch"])
    rows = []
    for _, p in paper.iterrows():
        e = int(p.epoch)
        r: dict[str, Any] = {"epoch": e}
        for dom, cols in (("literary", ("literary_ddI", "literary_wilcoxon_p", "literary_d")),
                          ("factual", ("factual_ddI", "factual_p", "factual_d"))):
            ok = (dom, e) in t.index
            g = t.loc[(dom, e)] if ok else None
            get = lambda c: g[c] if ok and c in g else math.nan  # noqa: E731, B023
            r |= {f"{dom} Δ(ΔI)": get("delta"), f"{dom} Δ(ΔI) paper": p[cols[0]],
                  f"{dom} p": get("wilcoxon_p"), f"{dom} Holm p": get("holm_p"), f"{dom} p paper": p[cols[1]],
                  f"{dom} d_z": get("d_z"), f"{dom} d_av": get("d_av"), f"{dom} d paper": p[cols[2]]}
        rows.append(r | {"unit": unit, "unit paper": PAPER_UNIT_TABLE1})
    return pd.DataFrame(rows)


def side_by_side_table2(table2: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 2 with this run's and the paper's values in adjacent columns, with units."""
    m = table2.merge(paper, on="domain", how="outer", suffixes=("", " paper"))
    order = {d: k for k, d in enumerate(paper.domain)}
    m = m.sort_values("domain", key=lambda d: d.map(order).fillna(len(order)), ignore_index=True)
    fmt = lambda lo, hi: f"[{lo:+.3f}, {hi:+.3f}]" if not (math.isnan(lo) or math.isnan(hi)) else ""  # noqa: E731
    unit = str(table2["unit"].dropna().iloc[0]) if "unit" in table2 and table2["unit"].notna().any() else "bits"
    return pd.DataFrame({
        "domain": m.domain, "n": m.n, "n paper": m["n paper"], "base mean": m.base_mean, "base mean paper": m["base_mean paper"],
        "LoRA mean": m.lora_mean, "LoRA mean paper": m["lora_mean paper"], "Δ": m.delta, "Δ paper": m["delta paper"],
        "95% CI": [fmt(a, b) for a, b in zip(m.ci_low, m.ci_high)],
        "95% CI paper": [fmt(a, b) for a, b in zip(m["ci_low paper"], m["ci_high paper"])],
        "unit": f"{unit}/token",
        "unit paper": PAPER_UNIT_TABLE2,
    })


def implied_t_p(paper: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """One-sided paired-t p implied by each reported d if it were d_z (t = d·√n), beside the reported Wilcoxon p."""
    rows = []
    for _, p in paper.iterrows():
        for dom, dcol, pcol in (("literary", "literary_d", "literary_wilcoxon_p"), ("factual", "factual_d", "factual_p")):
            t = p[dcol] * math.sqrt(n)
            rows.append({"epoch": int(p.epoch), "domain": dom, "d (paper)": p[dcol], "Wilcoxon p (paper)": p[pcol],
                         "t if d were d_z": t, "one-sided t p if d were d_z": float(sps.t.sf(t, n - 1))})
    return pd.DataFrame(rows)

"""Δ(ΔI) and Δlog P statistics (§4.1, §4.5, §5.1), cross-checked between scipy and pingouin.

Units: every input is in nats; ``unit="bits"`` divides log-probabilities by ln 2 before any
statistic (p-values and Cohen's d do not depend on the unit, means and intervals do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

LN2 = math.log(2.0)


def unit_factor(unit: str) -> float:
    """Multiplier from nats to ``unit``."""
    if unit == "nats":
        return 1.0
    if unit == "bits":
        return 1.0 / LN2
    raise ValueError(f"unknown unit {unit!r}: expected 'bits' or 'nats'")


def paired_tests(lora: Sequence[float], base: Sequence[float]) -> dict[str, float]:
    """Δ = lora − base per item: Wilcoxon one-sided (H1: lora > base), paired t, d_z and d_av.

    d_z = mean(Δ)/sd(Δ); d_av = mean(Δ)/((sd_lora+sd_base)/2) (Lakens 2013); d_rms uses
    sqrt((sd_lora²+sd_base²)/2), which is what pingouin calls Cohen's d for paired data.
    """
    a, b = np.asarray(lora, float), np.asarray(base, float)
    d = a - b
    n = d.size
    sd_d, sd_a, sd_b = d.std(ddof=1), a.std(ddof=1), b.std(ddof=1)
    nz = d[d != 0]
    w = sps.wilcoxon(d, alternative="greater") if nz.size else None
    t2 = sps.ttest_rel(a, b)
    t1 = sps.ttest_rel(a, b, alternative="greater")
    return {
        "n": n, "mean_base": b.mean(), "mean_lora": a.mean(), "delta": d.mean(), "sd_delta": sd_d,
        "wilcoxon_W": float(w.statistic) if w else math.nan, "wilcoxon_p": float(w.pvalue) if w else math.nan,
        "t": float(t2.statistic), "t_p_two_sided": float(t2.pvalue), "t_p_one_sided": float(t1.pvalue),
        "d_z": d.mean() / sd_d if sd_d > 0 else math.nan,
        "d_av": d.mean() / ((sd_a + sd_b) / 2) if sd_a + sd_b > 0 else math.nan,
        "d_rms": d.mean() / math.sqrt((sd_a**2 + sd_b**2) / 2) if sd_a + sd_b > 0 else math.nan,
    }


def pingouin_check(lora: Sequence[float], base: Sequence[float], ours: dict[str, float], tol: float = 1e-9) -> dict[str, float]:
    """Recompute p-values and effect sizes with pingouin; raise if they disagree with scipy/ours."""
    import pingouin as pg

    a, b = np.asarray(lora, float), np.asarray(base, float)
    got = {
        "wilcoxon_p": float(pg.wilcoxon(a, b, alternative="greater")["p_val"].iloc[0]),
        "t_p_two_sided": float(pg.ttest(a, b, paired=True)["p_val"].iloc[0]),
        "d_z": float(pg.compute_effsize(a, b, paired=True, eftype="cohen_dz")) if ours["sd_delta"] > 0 else math.nan,
        "d_rms": float(pg.compute_effsize(a, b, paired=True, eftype="cohen")),
    }
    for k, v in got.items():
        if not (math.isnan(v) and math.isnan(ours[k])) and abs(v - ours[k]) > tol * max(1.0, abs(v)):
            raise AssertionError(f"pingouin and scipy disagree on {k}: {v!r} vs {ours[k]!r}")
    return got


def delta_delta_i(scores: pd.DataFrame, unit: str = "bits") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-item Δ(ΔI) and the per-(epoch, domain) summary (Table 1).

    ``scores`` has one row per (model, item) with columns ``model`` ("base" or "epoch-N"),
    ``epoch`` (0 for base), ``id``, ``domain`` and ``dI`` (nats).
    """
    f = unit_factor(unit)
    base = scores[scores.model == "base"].set_index("id")
    items, rows = [], []
    for epoch, g in scores[scores.model != "base"].groupby("epoch"):
        g = g.set_index("id")
        for dom in sorted(g.domain.unique()):
            ids = g.index[g.domain == dom]
            lo, ba = g.loc[ids, "dI"].to_numpy() * f, base.loc[ids, "dI"].to_numpy() * f
            res = paired_tests(lo, ba)
            pingouin_check(lo, ba, res)
            rows.append({"epoch": int(epoch), "domain": dom, **res})
            items.extend({"epoch": int(epoch), "id": i, "domain": dom, "dI_base": x, "dI_lora": y, "ddI": y - x}
                         for i, x, y in zip(ids, ba, lo))
    return pd.DataFrame(items), pd.DataFrame(rows)


def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Symmetric t-interval of the mean (the form of the paper's Table 2 intervals)."""
    x = np.asarray(x, float)
    h = sps.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return x.mean() - h, x.mean() + h


def delta_logp_table(base: pd.DataFrame, lora: pd.DataFrame, unit: str = "bits") -> pd.DataFrame:
    """Table 2: per-token log P of each passage, base vs LoRA, for literary, news, popsci, factual combined."""
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
        lo_ci, hi_ci = t_interval(lo - b) if len(g) > 1 else (math.nan, math.nan)
        rows.append({"domain": name, "n": len(g), "base_mean": b.mean(), "lora_mean": lo.mean(),
                     "delta": (lo - b).mean(), "ci_low": lo_ci, "ci_high": hi_ci})
    return pd.DataFrame(rows)


def binary_entropy_bits(logp: Sequence[float]) -> float:
    """Entropy (bits) of the distribution obtained by normalising log-scores over the candidates."""
    z = np.asarray(logp, float)
    p = np.exp(z - z.max())
    p /= p.sum()
    return float(-(p * np.log2(np.clip(p, 1e-300, 1))).sum())


def softmax(logp: Sequence[float]) -> np.ndarray:
    """Normalise log-scores over a candidate set."""
    z = np.asarray(logp, float)
    p = np.exp(z - z.max())
    return p / p.sum()


def side_by_side_table1(table1: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 1 in the paper's layout, this run's value beside the paper's for each cell."""
    t = table1.set_index(["domain", "epoch"])
    rows = []
    for _, p in paper.iterrows():
        e = int(p.epoch)
        r: dict[str, Any] = {"epoch": e}
        for dom, cols in (("literary", ("literary_ddI", "literary_wilcoxon_p", "literary_d")),
                          ("factual", ("factual_ddI", "factual_p", "factual_d"))):
            ok = (dom, e) in t.index
            g = t.loc[(dom, e)] if ok else None
            r |= {f"{dom} Δ(ΔI)": g.delta if ok else math.nan, f"{dom} Δ(ΔI) paper": p[cols[0]],
                  f"{dom} p": g.wilcoxon_p if ok else math.nan, f"{dom} p paper": p[cols[1]],
                  f"{dom} d_z": g.d_z if ok else math.nan, f"{dom} d_av": g.d_av if ok else math.nan,
                  f"{dom} d paper": p[cols[2]]}
        rows.append(r)
    return pd.DataFrame(rows)


def side_by_side_table2(table2: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 2 with this run's and the paper's values in adjacent columns."""
    m = table2.merge(paper, on="domain", how="outer", suffixes=("", " paper"))
    fmt = lambda lo, hi: f"[{lo:+.3f}, {hi:+.3f}]" if not (math.isnan(lo) or math.isnan(hi)) else ""  # noqa: E731
    return pd.DataFrame({
        "domain": m.domain, "n": m.n, "n paper": m["n paper"], "base mean": m.base_mean, "base mean paper": m["base_mean paper"],
        "LoRA mean": m.lora_mean, "LoRA mean paper": m["lora_mean paper"], "Δ": m.delta, "Δ paper": m["delta paper"],
        "95% CI": [fmt(a, b) for a, b in zip(m.ci_low, m.ci_high)],
        "95% CI paper": [fmt(a, b) for a, b in zip(m["ci_low paper"], m["ci_high paper"])],
        "unit": m.get("unit", "bits"),
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

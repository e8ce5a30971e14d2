"""The claims table: each claim of the paper, the criterion it is judged by, what this run found, the verdict.

The criteria are declared before any result, in ``data/claims_criteria.csv`` (one row per claim: the
paper's sentence and number, the test, the threshold, why, and what counts as failure);
:func:`criteria` returns them for the book to show first. Each claim's rule is a small pure function
over this run's tables (:data:`RULES`) returning an :class:`Outcome`.

Verdicts: "reproduced", "not reproduced", "cannot be tested here" (a missing input gives the last,
with the reason, never a silent drop). ``verdict_detail`` carries the full wording where the verdict
is qualified, e.g. "reproduced (effect only; reasoning attribution untested)". Caveats shared by
every row (stand-in data, model) come once from :func:`shared_caveats`, not in each row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from cqa_utils.method import stats as S
from cqa_utils.method.config import DATA_DIR
from cqa_utils.method.stats import ALPHA  # the one significance level

CRITERIA_PATH = DATA_DIR / "claims_criteria.csv"
REPRODUCED, NOT_REPRODUCED, UNTESTABLE = "reproduced", "not reproduced", "cannot be tested here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNTESTABLE)
TOST_BOUND = 0.5  # the paper's own literary d: see data/claims_criteria.csv, factual_null
FACTUAL_MAX_D = 0.15
SHARPEN_RATIO = 0.5
PAPER_TRAIN_MIN = 5 + 35 / 60
TIME_FACTOR = 2.0
DLOGP_ROWS = ("literary", "news", "popsci", "factual combined")


class Outcome(NamedTuple):
    """A rule's result: the verdict, what this run found (text), and an optional qualifier of the verdict."""

    verdict: str
    found: str
    qualifier: str = ""


@dataclass(frozen=True)
class ClaimInputs:
    """Everything a rule may read. Only ``table1`` is required; a rule whose input is None says so."""

    table1: pd.DataFrame
    table2: pd.DataFrame | None = None
    epochs: pd.DataFrame | None = None
    pair_scores: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    primary_epoch: int = 5
    d_col: str = "d_z"
    control_table1: pd.DataFrame | None = None
    control_epoch: int | None = None
    ablation_items: pd.DataFrame | None = None
    gpu_timing: dict[str, Any] | None = None
    unit: str = "bits"


def criteria(path: str | None = None) -> pd.DataFrame:
    """The declared claim criteria (one row per claim), to be shown before any result."""
    return pd.read_csv(path or CRITERIA_PATH, dtype=str, keep_default_na=False)


def shared_caveats(setting: str = "", standin: bool | None = None, n: int = 20, mde: float | None = None) -> list[str]:
    """Caveats that apply to every verdict, stated once; ``mde`` is the design's minimum detectable d_z at ``n``
    (computed here when not given)."""
    mde = S.wilcoxon_mde(n) if mde is None else mde
    out = ["A verdict says whether the paper's pattern appears in this run's setting"
           + (f" ({setting})" if setting else "") + "; it is never a statement about the paper's own data or model."]
    if standin:
        out.append("The data are the stand-in written for this replication, not the paper's SNAKE-100 corpus or "
                   "benchmark (unreleased).")
    out.append(f"Each domain has {n} items: at that size a test that does not reject is weak evidence of no effect "
               + (f"(the smallest effect a one-sided Wilcoxon test detects with 80 % power at n = {n} is d_z ≈ {mde:.2f})."
                  if math.isfinite(mde) else f"(at n = {n} no outcome of a one-sided Wilcoxon test can reach p < 0.05)."))
    return out


# ------------------------------------------------------------------------------------------ helpers

def _row(t: pd.DataFrame, domain: str, epoch: int) -> pd.Series | None:
    g = t[(t.domain == domain) & (t.epoch == epoch)]
    return g.iloc[0] if len(g) else None


def _domain(t: pd.DataFrame, domain: str) -> pd.DataFrame:
    return t[t.domain == domain].sort_values("epoch").set_index("epoch")


def _p(p: float) -> str:
    return "n/a" if p is None or (isinstance(p, float) and math.isnan(p)) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _items(inp: ClaimInputs) -> pd.DataFrame | None:
    """Per-item Δ(ΔI): the given items table, else computed from the pair scores in ``inp.unit``."""
    if inp.items is not None:
        return inp.items
    if inp.pair_scores is None or not (inp.pair_scores.model == "base").any():
        return None
    return S.item_deltas(inp.pair_scores, inp.unit)


def control_detection(ctl: pd.DataFrame, primary_epoch: int, control_epoch: int | None = None,
                      domain: str = "literary") -> dict[str, Any]:
    """Was the positive control's effect detected? Its ``domain`` d_z > 0 with Wilcoxon p < ALPHA at its epoch.

    The epoch is ``control_epoch`` if given, else the primary epoch if the control was scored there, else
    its last scored epoch. Returns detected (bool), epoch, d_z, p, a short ``found`` text and a ``sentence``.
    """
    epochs = _domain(ctl, domain).index
    if control_epoch is None and epochs.empty:
        return {"detected": False, "epoch": None, "d_z": math.nan, "p": math.nan, "found": "no positive-control rows",
                "sentence": f"The positive control has no {domain} rows: the instrument is **not validated**."}
    ce = control_epoch if control_epoch is not None else (primary_epoch if primary_epoch in epochs else int(epochs.max()))
    c = _row(ctl, domain, ce)
    detected = c is not None and bool(c.d_z > 0 and c.wilcoxon_p < ALPHA)
    dz, p = (math.nan, math.nan) if c is None else (float(c.d_z), float(c.wilcoxon_p))
    found = (f"positive control at epoch {ce}: " + ("not scored" if c is None else f"d_z = {dz:.2f}, p = {_p(p)}")
             + (" (detected)" if detected else " (not detected)"))
    sentence = (f"**Detected.** At epoch {ce} the positive control raises {domain} Δ(ΔI) with d_z = {dz:.2f} (one-sided "
                f"Wilcoxon p = {_p(p)}): with this model, this scoring and n = {int(c.n)}, the instrument sees an effect "
                "that is there." if detected else
                f"**Not detected.** At epoch {ce} the positive control's {domain} effect is "
                + ("missing" if c is None else f"d_z = {dz:.2f} (one-sided Wilcoxon p = {_p(p)})")
                + ": this instrument did not see an effect that was put there on purpose, so every null result in "
                  "this book is uninformative.")
    return {"detected": detected, "epoch": ce, "d_z": dz, "p": p, "found": found, "sentence": sentence}


# ------------------------------------------------------------------------------------------ rules

def rule_literary_effect(inp: ClaimInputs) -> Outcome:
    """Effect at the primary epoch, gated by a detected positive control and, if run, a reasoning ablation."""
    pe, r = inp.primary_epoch, _row(inp.table1, "literary", inp.primary_epoch)
    if r is None:
        return Outcome(UNTESTABLE, f"epoch {pe} was not scored for the literary group")
    effect = bool(r.delta > 0 and r.wilcoxon_p < ALPHA)
    holm_p = f", Holm over the sweep {_p(r.holm_p)}" if "holm_p" in r else ""
    found = [f"epoch {pe}: Δ(ΔI) = {r.delta:+.2f} {inp.unit}, Wilcoxon p = {_p(r.wilcoxon_p)}{holm_p}, d_z = {r.d_z:.2f}"]
    ctl = inp.control_table1
    if ctl is None:
        return Outcome(UNTESTABLE, "; ".join(found + ["no positive-control run: instrument not validated"]))
    det = control_detection(ctl, pe, inp.control_epoch)
    if det["epoch"] is None:
        return Outcome(UNTESTABLE, "; ".join(found + ["the positive-control table has no literary rows: instrument not validated"]))
    found.append(det["found"])
    if not det["detected"]:
        return Outcome(UNTESTABLE, "; ".join(found + ["instrument not validated"]))
    if not effect:
        return Outcome(NOT_REPRODUCED, "; ".join(found))
    items = _items(inp)
    if inp.ablation_items is None or items is None:
        return Outcome(REPRODUCED, "; ".join(found + ["no no-reasoning ablation run"]), "effect only; reasoning attribution untested")
    sel = lambda t: t[(t.domain == "literary") & (t.epoch == pe)].set_index("id").ddI  # noqa: E731
    diff = (sel(items) - sel(inp.ablation_items)).dropna()
    if diff.empty:
        return Outcome(REPRODUCED, "; ".join(found + [f"the ablation has no literary items at epoch {pe}"]),
                       "effect only; reasoning attribution untested")
    w = S.wilcoxon_greater(diff.to_numpy())
    found.append(f"CoT − no-reasoning Δ(ΔI): mean {diff.mean():+.2f} {inp.unit} over {diff.size} items, Wilcoxon p = {_p(w['wilcoxon_p'])}")
    if w["wilcoxon_p"] < ALPHA:
        return Outcome(REPRODUCED, "; ".join(found))
    return Outcome(NOT_REPRODUCED, "; ".join(found), "reproduced the effect, not its attribution to the reasoning")


def rule_factual_null(inp: ClaimInputs) -> Outcome:
    """TOST equivalence of the factual d_z within ±TOST_BOUND; the paper's 'p > 0.5' reading shown beside it."""
    pe, r = inp.primary_epoch, _row(inp.table1, "factual", inp.primary_epoch)
    if r is None or math.isnan(r.d_z):
        return Outcome(UNTESTABLE, f"epoch {pe}: no factual d_z")
    t = S.tost_dz(float(r.d_z), int(r.n), TOST_BOUND, ALPHA)
    reading = r.wilcoxon_p > 0.5
    found = (f"epoch {pe}: Δ(ΔI) = {r.delta:+.2f} {inp.unit}, d_z = {r.d_z:+.2f}, Wilcoxon p = {_p(r.wilcoxon_p)}; "
             f"TOST (±{TOST_BOUND}) p = {_p(t['p_tost'])}, its power at d_z = 0 with n = {int(r.n)}: {t['power_at_zero']:.2f}; "
             f"the paper's reading p > 0.5: {'met' if reading else 'not met'}")
    if t["p_tost"] < ALPHA:
        return Outcome(REPRODUCED, found)
    return Outcome(NOT_REPRODUCED, found, "equivalence not shown" + ("; the paper's p > 0.5 reading holds" if reading else ""))


def rule_domain_selectivity(inp: ClaimInputs) -> Outcome:
    """Mann–Whitney U (literary > factual) on per-item Δ(ΔI) at the primary epoch, with a bootstrap CI."""
    pe, items = inp.primary_epoch, _items(inp)
    if items is None:
        return Outcome(UNTESTABLE, "no per-item Δ(ΔI)")
    g = items[items.epoch == pe]
    lit, fac = g[g.domain == "literary"].ddI.to_numpy(), g[g.domain == "factual"].ddI.to_numpy()
    if lit.size < 2 or fac.size < 2:
        return Outcome(UNTESTABLE, f"epoch {pe}: {lit.size} literary and {fac.size} factual items (need ≥ 2 each)")
    u = S.mann_whitney_greater(lit, fac)
    lo, hi = S.bootstrap_diff_ci(lit, fac)
    found = (f"epoch {pe}: literary − factual mean Δ(ΔI) = {lit.mean() - fac.mean():+.2f} {inp.unit} "
             f"[bootstrap 95 % {lo:+.2f}, {hi:+.2f}]; Mann–Whitney U = {u['U']:.0f}, one-sided p = {_p(u['p'])}")
    return Outcome(REPRODUCED if u["p"] < ALPHA else NOT_REPRODUCED, found)


def rule_significance_pattern(inp: ClaimInputs) -> Outcome:
    """First significant sweep epoch is 4 and the smallest Wilcoxon p is at 5."""
    lit = _domain(inp.table1, "literary")
    missing = sorted({2, 3, 4, 5} - set(int(e) for e in lit.index))
    if missing:
        return Outcome(UNTESTABLE, f"epochs {missing} not in the sweep")
    sig = [int(e) for e in lit.index if lit.loc[e, "wilcoxon_p"] < ALPHA]
    best = int(lit.wilcoxon_p.idxmin())
    found = (f"smallest p at epoch {best} ({_p(lit.loc[best, 'wilcoxon_p'])}); p < {ALPHA} at "
             + (", ".join(map(str, sig)) if sig else "no epoch"))
    return Outcome(REPRODUCED if sig and sig[0] == 4 and best == 5 else NOT_REPRODUCED, found)


def rule_literary_keeps_rising(inp: ClaimInputs) -> Outcome:
    """Mean literary Δ(ΔI) at the last sweep epoch exceeds that at the primary epoch."""
    lit, pe = _domain(inp.table1, "literary"), inp.primary_epoch
    later = [int(e) for e in lit.index if e > pe]
    if pe not in lit.index or not later:
        return Outcome(UNTESTABLE, f"need epoch {pe} and a later one; have {sorted(int(e) for e in lit.index)}")
    last = max(later)
    a, b = lit.loc[pe, "delta"], lit.loc[last, "delta"]
    return Outcome(REPRODUCED if b > a else NOT_REPRODUCED, f"{a:+.2f} at epoch {pe} → {b:+.2f} at epoch {last} ({inp.unit})")


def rule_factual_null_every_epoch(inp: ClaimInputs) -> Outcome:
    """All factual |d| < 0.15 over the sweep epochs."""
    fac = _domain(inp.table1, "factual")
    if fac.empty:
        return Outcome(UNTESTABLE, "no factual rows in Table 1")
    d = fac[inp.d_col].abs()
    if d.isna().any():
        return Outcome(UNTESTABLE, f"{inp.d_col} undefined (no spread in Δ(ΔI)) at epochs {[int(e) for e in d.index[d.isna()]]}")
    found = f"max |{inp.d_col}| = {d.max():.2f} (epoch {int(d.idxmax())}) over epochs {[int(e) for e in fac.index]}"
    return Outcome(REPRODUCED if d.max() < FACTUAL_MAX_D else NOT_REPRODUCED, found)


def _eval_loss(inp: ClaimInputs) -> pd.DataFrame:
    if inp.epochs is None or "eval_loss" not in inp.epochs:
        return pd.DataFrame(columns=["epoch", "eval_loss"])
    return inp.epochs.dropna(subset=["eval_loss"]).sort_values("epoch")


def rule_eval_loss_monotone(inp: ClaimInputs) -> Outcome:
    """eval_loss strictly increases from each logged epoch to the next."""
    ev = _eval_loss(inp)
    if len(ev) < 3:
        return Outcome(UNTESTABLE, f"{len(ev)} epochs with an eval_loss (need ≥ 3)")
    steps = np.diff(ev.eval_loss.to_numpy(float))
    falls = [int(e) for e, s in zip(ev.epoch.iloc[1:], steps) if s <= 0]
    found = (f"{ev.eval_loss.iloc[0]:.2f} at epoch {int(ev.epoch.iloc[0])} → {ev.eval_loss.iloc[-1]:.2f} at epoch "
             f"{int(ev.epoch.iloc[-1])}; " + (f"falls or stays level at epochs {falls}" if falls else "rises at every epoch"))
    return Outcome(NOT_REPRODUCED if falls else REPRODUCED, found)


def rule_checkpoint_choice(inp: ClaimInputs) -> Outcome:
    """Lowest eval_loss among the sweep epochs vs the sweep epoch of smallest literary Wilcoxon p."""
    lit = _domain(inp.table1, "literary")
    ev = _eval_loss(inp)
    ev = ev[ev.epoch.isin(lit.index)]
    if len(ev) < 2:
        return Outcome(UNTESTABLE, f"eval_loss at {len(ev)} sweep epochs (need ≥ 2 to choose between)")
    by_loss = int(ev.loc[ev.eval_loss.idxmin(), "epoch"])
    by_ddi = int(lit.wilcoxon_p.idxmin())
    p = float(lit.loc[by_ddi, "wilcoxon_p"])
    found = (f"among sweep epochs {[int(e) for e in lit.index]}: lowest eval_loss at epoch {by_loss}; "
             f"smallest literary p at epoch {by_ddi} (p = {_p(p)})")
    if p >= ALPHA:
        return Outcome(NOT_REPRODUCED, found, "moot: no sweep epoch is significant, so Δ(ΔI) selects nothing")
    if by_loss == by_ddi:
        return Outcome(NOT_REPRODUCED, found, "both select the same epoch")
    return Outcome(REPRODUCED, found)


def _table2(inp: ClaimInputs) -> pd.DataFrame:
    return pd.DataFrame(columns=["domain"]) if inp.table2 is None else inp.table2.set_index("domain")


def rule_dlogp_all_fall(inp: ClaimInputs) -> Outcome:
    """Every Table 2 row's 95 % interval lies below 0."""
    t2 = _table2(inp)
    missing = [d for d in DLOGP_ROWS if d not in t2.index]
    if missing:
        return Outcome(UNTESTABLE, f"Table 2 rows missing: {', '.join(missing)}")
    rows = t2.loc[list(DLOGP_ROWS)]
    found = "; ".join(f"{d}: {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for d, r in rows.iterrows())
    return Outcome(REPRODUCED if bool((rows.ci_high < 0).all()) else NOT_REPRODUCED, found + f" ({inp.unit}/token)")


def _sd(r: pd.Series) -> float:
    """sd of the per-passage Δ: the column if present, else recovered from the symmetric t-interval."""
    if "sd_delta" in r and not pd.isna(r.sd_delta):
        return float(r.sd_delta)
    return float((r.ci_high - r.ci_low) / 2 / sps.t.ppf(0.975, r.n - 1) * math.sqrt(r.n))


def rule_dlogp_literary_more(inp: ClaimInputs) -> Outcome:
    """Welch 95 % interval of (literary − factual combined) mean Δ log P lies below 0."""
    t2 = _table2(inp)
    missing = [d for d in ("literary", "factual combined") if d not in t2.index]
    if missing:
        return Outcome(UNTESTABLE, f"Table 2 rows missing: {', '.join(missing)}")
    a, b = t2.loc["literary"], t2.loc["factual combined"]
    if a.n < 2 or b.n < 2:
        return Outcome(UNTESTABLE, f"{int(a.n)} literary and {int(b.n)} factual passages (need ≥ 2 each)")
    lo, hi, df = S.welch_ci_from_summary(a.delta, _sd(a), int(a.n), b.delta, _sd(b), int(b.n))
    found = (f"literary {a.delta:+.3f} vs factual combined {b.delta:+.3f} {inp.unit}/token: difference "
             f"{a.delta - b.delta:+.3f}, Welch 95 % [{lo:+.3f}, {hi:+.3f}] (df {df:.1f})")
    return Outcome(REPRODUCED if hi < 0 else NOT_REPRODUCED, found)


def rule_sharpening(inp: ClaimInputs) -> Outcome:
    """Conditional good−bad log-odds rise (Wilcoxon), unconditional ones move less than half as much."""
    ps, pe = inp.pair_scores, inp.primary_epoch
    if ps is None:
        return Outcome(UNTESTABLE, "no pair scores")
    lit = ps[ps.domain == "literary"]
    b, a = lit[lit.model == "base"].set_index("id"), lit[(lit.model != "base") & (lit.epoch == pe)].set_index("id")
    ids = a.index.intersection(b.index)
    if len(ids) < 2:
        return Outcome(UNTESTABLE, f"base and epoch {pe} share {len(ids)} literary items (need ≥ 2)")
    a, b = a.loc[ids], b.loc[ids]
    d_cond = ((a.logp_cond_good - a.logp_cond_bad) - (b.logp_cond_good - b.logp_cond_bad)).to_numpy(float)
    d_unc = ((a.logp_uncond_good - a.logp_uncond_bad) - (b.logp_uncond_good - b.logp_uncond_bad)).to_numpy(float)
    w = S.wilcoxon_greater(d_cond)
    ratio = np.abs(d_unc).mean() / np.abs(d_cond).mean() if np.abs(d_cond).mean() > 0 else math.inf
    found = (f"literary, epoch {pe}: conditional log-odds moved {d_cond.mean():+.2f} nats on average (Wilcoxon p = "
             f"{_p(w['wilcoxon_p'])}); mean |unconditional change| / mean |conditional change| = {ratio:.2f}")
    ok = bool(d_cond.mean() > 0 and w["wilcoxon_p"] < ALPHA and ratio < SHARPEN_RATIO)
    return Outcome(REPRODUCED if ok else NOT_REPRODUCED, found)


def rule_training_time(inp: ClaimInputs) -> Outcome:
    """A GPU timing of the paper profile within twice the paper's ~5.6 minutes."""
    g = inp.gpu_timing
    if not g or "minutes" not in g:
        return Outcome(UNTESTABLE, "no GPU timing of the paper profile supplied")
    if g.get("profile", "paper") != "paper":
        return Outcome(UNTESTABLE, f"the timing supplied is of the {g['profile']!r} profile, not the paper's model")
    m = float(g["minutes"])
    found = f"{m:.1f} min on {g.get('device', 'an unnamed GPU')} (paper: {PAPER_TRAIN_MIN:.1f} min on one A800-80GB)"
    return Outcome(REPRODUCED if m <= TIME_FACTOR * PAPER_TRAIN_MIN else NOT_REPRODUCED, found)


def rule_untestable(reason: str) -> Callable[[ClaimInputs], Outcome]:
    """A rule for a claim no run of this book can test."""
    return lambda inp: Outcome(UNTESTABLE, reason)


RULES: dict[str, Callable[[ClaimInputs], Outcome]] = {
    "literary_effect": rule_literary_effect,
    "factual_null": rule_factual_null,
    "domain_selectivity": rule_domain_selectivity,
    "significance_pattern": rule_significance_pattern,
    "literary_keeps_rising": rule_literary_keeps_rising,
    "factual_null_every_epoch": rule_factual_null_every_epoch,
    "eval_loss_monotone": rule_eval_loss_monotone,
    "checkpoint_choice": rule_checkpoint_choice,
    "dlogp_all_fall": rule_dlogp_all_fall,
    "dlogp_literary_more": rule_dlogp_literary_more,
    "sharpening": rule_sharpening,
    "training_time": rule_training_time,
}


def verdict_text(o: Outcome) -> str:
    """The verdict in full: "reproduced (effect only; …)", "not reproduced: reproduced the effect, not …"."""
    if not o.qualifier:
        return o.verdict
    return f"{o.verdict} ({o.qualifier})" if o.verdict == REPRODUCED else f"{o.verdict}: {o.qualifier}"


def evaluate(inp: ClaimInputs, crit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Apply every declared criterion to ``inp``: one row per claim, in the criteria file's order.

    Columns: id, claim, paper §, paper reports, this run, verdict, verdict_detail.
    """
    crit = criteria() if crit is None else crit
    rows = []
    for c in crit.itertuples(index=False):
        rule = RULES.get(c.id, rule_untestable(c.why))
        o = rule(inp)
        rows.append({"id": c.id, "claim": c.claim, "paper §": c.section, "paper reports": c.paper_value,
                     "this run": o.found, "verdict": o.verdict, "verdict_detail": verdict_text(o)})
    return pd.DataFrame(rows)


def build_claims(table1: pd.DataFrame, table2: pd.DataFrame | None, epochs: pd.DataFrame | None,
                 pair_scores: pd.DataFrame | None, primary_epoch: int, d_col: str = "d_z", setting: str = "", *,
                 items: pd.DataFrame | None = None, control_table1: pd.DataFrame | None = None,
                 control_epoch: int | None = None, ablation_items: pd.DataFrame | None = None,
                 gpu_timing: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every claim's verdict from this run's tables (see :func:`evaluate` for the columns).

    ``setting`` is no longer written into the rows: it goes to ``df.attrs["caveats"]``; render
    :func:`shared_caveats` once instead. ``items`` defaults to the per-item Δ(ΔI) computed from
    ``pair_scores`` in Table 1's unit.
    """
    unit = str(table1["unit"].iloc[0]) if "unit" in table1 and len(table1) else "bits"
    inp = ClaimInputs(table1, table2, epochs, pair_scores, items, primary_epoch, d_col, control_table1, control_epoch,
                      ablation_items, gpu_timing, unit)
    df = evaluate(inp)
    df.attrs["caveats"] = shared_caveats(setting)
    return df


def summary(claims: pd.DataFrame) -> dict[str, Any]:
    """Counts of each verdict."""
    return claims.verdict.value_counts().to_dict()


# ------------------------------------------------------------------------------------------ §6.6 and §4.4 rules
# Judged from the held-out selection (notebook 05) and the data-scale sweep (notebook 10), each from its own table.
# Outcomes: "consistent", "contradicted", "inconclusive", "cannot be tested here".

CONSISTENT, CONTRADICTED, INCONCLUSIVE = "consistent", "contradicted", "inconclusive"
HELDOUT_CHOOSER = "held-out calibration Δ(ΔI)"
SCALE_COMPARED_ROWS = 60


def rule_heldout_selection(selection: pd.DataFrame | None) -> Outcome:
    """§6.6: at the epoch chosen on the calibration pairs, does the benchmark show the literary effect?

    ``selection``: :func:`cqa_utils.method.epoch_scoring.selection_table` (columns chosen by, epoch, domain, n,
    delta, ci_low, ci_high, wilcoxon_p, unit). Consistent: benchmark literary mean Δ(ΔI) > 0 with one-sided
    Wilcoxon p < ALPHA at that epoch. Contradicted: its bootstrap 95 % CI lies entirely at or below 0.
    Inconclusive: neither. Cannot be tested: no held-out choice, or the benchmark was not scored at it.
    """
    if selection is None or selection.empty:
        return Outcome(UNTESTABLE, "no held-out selection table")
    r = selection[(selection["chosen by"] == HELDOUT_CHOOSER) & (selection.domain == "literary")]
    if r.empty or int(r.iloc[0].n) < 2 or pd.isna(r.iloc[0].wilcoxon_p):
        return Outcome(UNTESTABLE, "the benchmark's literary pairs were not scored at the epoch chosen on the calibration pairs")
    r = r.iloc[0]
    found = (f"epoch {int(r.epoch)} chosen on the calibration pairs; benchmark literary Δ(ΔI) there = {r.delta:+.2f} "
             f"{r.unit} [bootstrap 95 % {r.ci_low:+.2f}, {r.ci_high:+.2f}], one-sided Wilcoxon p = {_p(r.wilcoxon_p)} (n = {int(r.n)})")
    if r.delta > 0 and r.wilcoxon_p < ALPHA:
        return Outcome(CONSISTENT, found)
    if r.ci_high <= 0:
        return Outcome(CONTRADICTED, found, "the interval excludes any positive literary effect")
    return Outcome(INCONCLUSIVE, found, "not detected, not excluded")


def rule_scale_saturation(scale: pd.DataFrame | None, compared_rows: int = SCALE_COMPARED_ROWS) -> Outcome:
    """§4.4 / §5.4: ~100 samples suffice, the effect saturating near the full training set.

    ``scale``: :func:`cqa_utils.method.epoch_scoring.scale_table` (n_rows, domain, delta, ci_low, ci_high,
    wilcoxon_p, unit); the largest n_rows is the full set. Judged on the literary group:
    consistent: the full-size effect is detected (mean > 0, one-sided Wilcoxon p < ALPHA) and the mean at
    ``compared_rows`` lies inside the full-size bootstrap 95 % CI (no resolvable gain from the last rows);
    contradicted: detected at full size and the ``compared_rows`` mean lies below that CI (still rising: not
    saturated); inconclusive: no effect detected at full size (nothing to saturate), or the ``compared_rows``
    mean lies above the CI. Cannot be tested: the full-size or the ``compared_rows`` row is missing.
    """
    if scale is None or scale.empty:
        return Outcome(UNTESTABLE, "no scale sweep")
    lit = scale[scale.domain == "literary"].set_index("n_rows").sort_index()
    if lit.empty or compared_rows not in lit.index or lit.index.max() <= compared_rows:
        have = [int(n) for n in lit.index]
        return Outcome(UNTESTABLE, f"need literary rows at {compared_rows} and at a larger full size; have {have}")
    full_n = int(lit.index.max())
    f, m = lit.loc[full_n], lit.loc[compared_rows]
    unit = f.unit if "unit" in lit else ""
    found = (f"literary Δ(ΔI): {m.delta:+.2f} {unit} at {compared_rows} rows; {f.delta:+.2f} {unit} at the full {full_n} rows "
             f"[bootstrap 95 % {f.ci_low:+.2f}, {f.ci_high:+.2f}], one-sided Wilcoxon p = {_p(f.wilcoxon_p)}; "
             + ", ".join(f"{int(n)} rows {r.delta:+.2f}" for n, r in lit.iterrows()))
    if not (f.delta > 0 and f.wilcoxon_p < ALPHA):
        return Outcome(INCONCLUSIVE, found, "no effect detected at full size: nothing to saturate")
    if f.ci_low <= m.delta <= f.ci_high:
        return Outcome(CONSISTENT, found)
    if m.delta < f.ci_low:
        return Outcome(CONTRADICTED, found, f"still rising from {compared_rows} rows to the full set")
    return Outcome(INCONCLUSIVE, found, f"the effect at {compared_rows} rows exceeds the full-size interval")


def _judged_elsewhere(where: str) -> Callable[[ClaimInputs], Outcome]:
    return lambda inp: Outcome(UNTESTABLE, f"judged from its own table in {where}, not an input of this table")


TABLE_RULES: dict[str, Callable[[pd.DataFrame | None], Outcome]] = {
    "heldout_selection": rule_heldout_selection,  # notebook 05, selection.csv
    "scale_saturation": rule_scale_saturation,  # notebook 10, scale.csv
}
RULES.update({"heldout_selection": _judged_elsewhere("notebook 05 (held-out selection)"),
              "scale_saturation": _judged_elsewhere("notebook 10 (scale sweep)")})

"""The claims table: each claim of the paper, the criterion it is judged by, what this run found, the verdict.

The criteria are declared before any result, in ``data/claims_criteria.csv``: one row per claim with
the paper's sentence and number, the test, its thresholds (the ``params`` column, the only place the
numbers live: rules read them with :func:`params`), whether a contradiction needs the held-out
control (``gate``), whether the rule is judged per seed (``per_seed``), whether the claim is central,
and what each outcome means (columns ``consistent``, ``contradicted``, ``inconclusive``,
``untestable``). Each claim's rule is a small pure function over this run's tables (:data:`RULES`)
returning an :class:`Outcome`; :func:`judge` adds the gate and the seeds.

Verdicts (:data:`VOCABULARY`): "consistent", "contradicted", "inconclusive" (with the reason:
underpowered, instrument not shown sensitive on unseen items, seed-sensitive) and "cannot be tested
here" (a missing input, with the reason, never a silent drop). Caveats shared by every row (stand-in
data, model) come once from :func:`shared_caveats`, not in each row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from cqa_utils.method import stats as S
from cqa_utils.method.config import DATA_DIR

CRITERIA_PATH = DATA_DIR / "claims_criteria.csv"
CONSISTENT, CONTRADICTED, INCONCLUSIVE, UNTESTABLE = "consistent", "contradicted", "inconclusive", "cannot be tested here"
VERDICTS = (CONSISTENT, CONTRADICTED, INCONCLUSIVE, UNTESTABLE)
#: What each verdict means (the one definition; the book prints it from here).
MEANING = {CONSISTENT: "the paper's pattern appears under the declared test",
           CONTRADICTED: "the data exclude the paper's pattern and the instrument was shown able to see it",
           INCONCLUSIVE: "neither, and the row says why (underpowered, instrument not shown sensitive on unseen items, or "
                         "verdicts differing between seeds)",
           UNTESTABLE: "this run lacks an input the test needs"}
VOCABULARY = "; ".join(f"{k}: {v}" for k, v in MEANING.items()) + "."
#: The summary's status words (see :func:`summary`).
STATUS_MEANING = ("[Re]: every central claim is consistent; [¬Re]: a central claim is contradicted; "
                  "inconclusive: neither")
COLUMNS = ["id", "claim", "section", "paper_says", "paper_value", "test", "threshold", "params", "gate", "per_seed", "central",
           "why", "consistent", "contradicted", "inconclusive", "untestable", "inputs"]
HELD_OUT = "held-out control"
DLOGP_ROWS = ("literary", "news", "popsci", "factual combined")


class Outcome(NamedTuple):
    """A rule's result: the verdict, what this run found (text), and a qualifier (for inconclusive: why)."""

    verdict: str
    found: str
    qualifier: str = ""


@dataclass(frozen=True)
class ClaimInputs:
    """Everything a rule may read. Only ``table1`` is required; a rule whose input is None says so.

    ``sensitivity``: the held-out positive control's detection (notebook 07's ``sensitivity.json``:
    detected, d_z, ci_low, ci_high, p, epoch, n, signal, sentence); without it no effect claim can be
    contradicted. ``seed_tables`` / ``seed_items``: Table 1 and per-item Δ(ΔI) of further seeds (the
    primary seed's are ``table1`` / ``items``); rules marked ``per_seed`` are judged at every seed.
    ``control_table1`` (the seen-items control, an upper bound) is kept for display and gates nothing.
    ``selection`` (notebook 05's ``selection.csv``) and ``scale`` (notebook 09's ``scale.csv``) feed the §6.6
    and §4.4 rules.
    """

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
    sensitivity: dict[str, Any] | None = None
    seed_tables: dict[int, pd.DataFrame] | None = None
    seed_items: dict[int, pd.DataFrame] | None = None
    primary_seed: int = 42
    selection: pd.DataFrame | None = None
    scale: pd.DataFrame | None = None


def _parse_params(text: str, where: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (x.strip() for x in text.split(";"))):
        key, sep, val = part.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = float(val)
        except ValueError:
            raise ValueError(f"{where}: field 'params': {part!r} is not name=number") from None
    return out


@functools.cache
def _read_criteria(path: str) -> pd.DataFrame:
    crit = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in crit.columns]
    if missing:
        raise ValueError(f"{path}: line 1: columns {missing} missing")
    for k, r in enumerate(crit.itertuples(index=False), start=2):
        _parse_params(r.params, f"{path}:{k} ({r.id})")
        if r.gate not in ("", HELD_OUT):
            raise ValueError(f"{path}:{k} ({r.id}): field 'gate': {r.gate!r} is neither empty nor {HELD_OUT!r}")
    return crit


def criteria(path: str | Path | None = None) -> pd.DataFrame:
    """The declared claim criteria (one row per claim), to be shown before any result.

    ``failure`` is derived (for pages that show one column): the four outcome rules joined.
    """
    crit = _read_criteria(str(path or CRITERIA_PATH)).copy()
    crit["failure"] = [f"contradicted: {r.contradicted} inconclusive: {r.inconclusive} cannot be tested here: {r.untestable}"
                       for r in crit.itertuples()]
    return crit


def params(claim_id: str, path: str | Path | None = None) -> dict[str, float]:
    """The declared thresholds of one claim (its ``params`` field), by name."""
    crit = _read_criteria(str(path or CRITERIA_PATH))
    row = crit[crit.id == claim_id]
    if row.empty:
        raise KeyError(f"{path or CRITERIA_PATH}: no claim {claim_id!r}")
    return _parse_params(row.params.iloc[0], f"{path or CRITERIA_PATH} ({claim_id})")


PAPER_TRAIN_MIN = params("training_time")["paper_s"] / 60


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
    """Was the (seen-items) positive control's effect detected? Its ``domain`` d_z > 0 with Wilcoxon p < α at its epoch.

    α is the literary claim's declared level. This control scored pairs it trained on: an upper bound that
    gates no verdict (the held-out control's ``sensitivity`` does).

    The epoch is ``control_epoch`` if given, else the primary epoch if the control was scored there, else
    its last scored epoch. Returns detected (bool), epoch, d_z, p, a short ``found`` text and a ``sentence``.
    """
    epochs = _domain(ctl, domain).index
    if control_epoch is None and epochs.empty:
        return {"detected": False, "epoch": None, "d_z": math.nan, "p": math.nan, "found": "no positive-control rows",
                "sentence": f"The positive control has no {domain} rows: the instrument is **not validated**."}
    ce = control_epoch if control_epoch is not None else (primary_epoch if primary_epoch in epochs else int(epochs.max()))
    c = _row(ctl, domain, ce)
    detected = c is not None and bool(c.d_z > 0 and c.wilcoxon_p < params("literary_effect")["alpha"])
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

def _lv(level: float) -> str:
    """A confidence level as the book writes it: "95 %"."""
    return f"{100 * level:g} %"


def _dz_ci(dz: float, n: int, level: float) -> tuple[float, float]:
    """The exact interval of δ_z; (nan, nan) when d_z is undefined (no spread), which excludes nothing."""
    return S.dz_ci(float(dz), int(n), level) if math.isfinite(float(dz)) else (math.nan, math.nan)


def _list(values: Any) -> str:
    """Epochs or sizes as the book prints them: "2, 3, 4", not a Python list."""
    return ", ".join(str(v) for v in values)


def _ties(values: pd.Series, rtol: float) -> list[int]:
    """The index labels whose value equals the minimum within a relative ``rtol`` (the declared tie rule)."""
    m = float(values.min())
    return [int(e) for e, v in values.items() if abs(float(v) - m) <= rtol * max(abs(m), abs(float(v)))]


def rule_literary_effect(inp: ClaimInputs) -> Outcome:
    """Effect at the primary epoch; its exclusion by the δ_z interval; attribution by the ablation (see the criteria)."""
    c, pe = params("literary_effect"), inp.primary_epoch
    r = _row(inp.table1, "literary", pe)
    if r is None:
        return Outcome(UNTESTABLE, f"epoch {pe} was not scored for the literary group")
    lo, hi = _dz_ci(r.d_z, r.n, c["level"])
    holm_p = f", Holm over the sweep {_p(r.holm_p)}" if "holm_p" in r else ""
    found = [f"epoch {pe}: Δ(ΔI) = {r.delta:+.2f} {inp.unit}, Wilcoxon p = {_p(r.wilcoxon_p)}{holm_p}, "
             f"d_z = {r.d_z:.2f} [{_lv(c['level'])} {lo:+.2f}, {hi:+.2f}]"]
    if not (r.delta > 0 and r.wilcoxon_p < c["alpha"]):
        if hi < c["paper_d"]:
            return Outcome(CONTRADICTED, "; ".join(found + [f"the interval excludes the paper's d = {c['paper_d']:.2f}"]))
        power = S.wilcoxon_power(c["paper_d"], int(r.n), c["alpha"])
        return Outcome(INCONCLUSIVE, "; ".join(found), f"underpowered: the interval reaches the paper's d = {c['paper_d']:.2f}; "
                       f"the Wilcoxon test's power there at n = {int(r.n)} is {power:.2f}")
    items = _items(inp)
    if inp.ablation_items is None or items is None:
        return Outcome(CONSISTENT, "; ".join(found + ["no no-reasoning ablation run"]), "effect only; reasoning attribution untested")
    sel = lambda t: t[(t.domain == "literary") & (t.epoch == pe)].set_index("id").ddI  # noqa: E731
    diff = (sel(items) - sel(inp.ablation_items)).dropna()
    if diff.size < 2:
        return Outcome(CONSISTENT, "; ".join(found + [f"the ablation shares {diff.size} literary items at epoch {pe}"]),
                       "effect only; reasoning attribution untested")
    w = S.wilcoxon_greater(diff.to_numpy())
    found.append(f"CoT − no-reasoning Δ(ΔI): mean {diff.mean():+.2f} {inp.unit} over {diff.size} items, Wilcoxon p = {_p(w['wilcoxon_p'])}")
    if w["wilcoxon_p"] < c["alpha"]:
        return Outcome(CONSISTENT, "; ".join(found))
    return Outcome(CONSISTENT, "; ".join(found), "effect only; its attribution to the reasoning not shown")


def rule_factual_null(inp: ClaimInputs) -> Outcome:
    """TOST equivalence of the factual d_z within ±bound; an effect shown when the δ_z interval excludes 0."""
    c, pe = params("factual_null"), inp.primary_epoch
    r = _row(inp.table1, "factual", pe)
    if r is None or not math.isfinite(r.d_z):
        return Outcome(UNTESTABLE, f"epoch {pe}: no factual d_z")
    t = S.tost_dz(float(r.d_z), int(r.n), c["bound"], c["alpha"])
    lo, hi = _dz_ci(r.d_z, r.n, c["level"])
    reading = r.wilcoxon_p > 0.5
    found = (f"epoch {pe}: Δ(ΔI) = {r.delta:+.2f} {inp.unit}, d_z = {r.d_z:+.2f} [{_lv(c['level'])} {lo:+.2f}, {hi:+.2f}], "
             f"Wilcoxon p = {_p(r.wilcoxon_p)}; TOST (±{c['bound']}) p = {_p(t['p_tost'])}; the paper's reading p > 0.5: "
             f"{'met' if reading else 'not met'}")
    if t["p_tost"] < c["alpha"]:
        return Outcome(CONSISTENT, found)
    if lo > 0 or hi < 0:
        return Outcome(CONTRADICTED, found + "; the interval excludes 0: a factual effect is shown")
    return Outcome(INCONCLUSIVE, found, f"underpowered: neither equivalence nor an effect shown; the TOST's power at d_z = 0 "
                   f"with n = {int(r.n)} is {t['power_at_zero']:.2f}")


def rule_domain_selectivity(inp: ClaimInputs) -> Outcome:
    """Mann–Whitney U (literary > factual) on per-item Δ(ΔI) at the primary epoch, with a bootstrap interval."""
    c, pe, items = params("domain_selectivity"), inp.primary_epoch, _items(inp)
    if items is None:
        return Outcome(UNTESTABLE, "no per-item Δ(ΔI)")
    g = items[items.epoch == pe]
    lit, fac = g[g.domain == "literary"].ddI.to_numpy(), g[g.domain == "factual"].ddI.to_numpy()
    if lit.size < 2 or fac.size < 2:
        return Outcome(UNTESTABLE, f"epoch {pe}: {lit.size} literary and {fac.size} factual items (need ≥ 2 each)")
    u = S.mann_whitney_greater(lit, fac)
    lo, hi = S.bootstrap_diff_ci(lit, fac, c["level"])
    found = (f"epoch {pe}: literary − factual mean Δ(ΔI) = {lit.mean() - fac.mean():+.2f} {inp.unit} "
             f"[bootstrap {_lv(c['level'])} {lo:+.2f}, {hi:+.2f}]; Mann–Whitney U = {u['U']:.0f}, one-sided p = {_p(u['p'])}")
    if u["p"] < c["alpha"]:
        return Outcome(CONSISTENT, found)
    if hi < 0:
        return Outcome(CONTRADICTED, found + "; the interval lies below 0")
    shift = c["paper_d_literary"] - c["paper_d_factual"]
    power = S.mann_whitney_power(shift, lit.size, fac.size, c["alpha"])
    return Outcome(INCONCLUSIVE, found, f"underpowered: the Mann–Whitney test's power for a difference of {shift:.2f} sd "
                   f"(the paper's d's) at n = {lit.size} + {fac.size} is {power:.2f}")


def rule_significance_pattern(inp: ClaimInputs) -> Outcome:
    """First significant sweep epoch is 4 and epoch 5 is among the smallest-p epochs (declared tie rule)."""
    c, lit = params("significance_pattern"), _domain(inp.table1, "literary")
    first, peak = int(c["first_epoch"]), int(c["peak_epoch"])
    missing = sorted(set(range(2, peak + 1)) - set(int(e) for e in lit.index))
    if missing:
        return Outcome(UNTESTABLE, f"epochs {_list(missing)} not in the sweep")
    sig = [int(e) for e in lit.index if lit.loc[e, "wilcoxon_p"] < c["alpha"]]
    best = _ties(lit.wilcoxon_p, c["tie_rtol"])
    found = (f"smallest p ({_p(lit.wilcoxon_p.min())}) at epoch{'s' if len(best) > 1 else ''} {', '.join(map(str, best))}"
             + (" (tied)" if len(best) > 1 else "") + f"; p < {c['alpha']} at " + (", ".join(map(str, sig)) if sig else "no epoch"))
    if sig and sig[0] == first and peak in best:
        return Outcome(CONSISTENT, found)
    if sig:
        return Outcome(CONTRADICTED, found)
    r = _row(inp.table1, "literary", peak)
    power = S.wilcoxon_power(params("literary_effect")["paper_d"], int(r.n), c["alpha"])
    return Outcome(INCONCLUSIVE, found, f"underpowered: no epoch is significant, so there is nothing to locate; the Wilcoxon "
                   f"test's power at the paper's d = {params('literary_effect')['paper_d']:.2f} with n = {int(r.n)} is {power:.2f}")


def rule_literary_keeps_rising(inp: ClaimInputs) -> Outcome:
    """Mean literary Δ(ΔI) at the last sweep epoch exceeds that at the primary epoch; a fall excluded by its interval."""
    c, lit, pe = params("literary_keeps_rising"), _domain(inp.table1, "literary"), inp.primary_epoch
    later = [int(e) for e in lit.index if e > pe]
    if pe not in lit.index or not later:
        return Outcome(UNTESTABLE, f"need epoch {pe} and a later one; have {_list(sorted(int(e) for e in lit.index))}")
    last = max(later)
    a, b = lit.loc[pe, "delta"], lit.loc[last, "delta"]
    found = f"{a:+.2f} at epoch {pe} → {b:+.2f} at epoch {last} ({inp.unit})"
    if b > a:
        return Outcome(CONSISTENT, found)
    items = _items(inp)
    if items is None:
        return Outcome(INCONCLUSIVE, found, "a fall, but no per-item Δ(ΔI) to bound it")
    by = items[items.domain == "literary"].pivot_table(index="id", columns="epoch", values="ddI")
    diff = (by[last] - by[pe]).dropna().to_numpy() if {pe, last} <= set(by.columns) else np.array([])
    if diff.size < 2:
        return Outcome(INCONCLUSIVE, found, "a fall, but fewer than 2 items scored at both epochs to bound it")
    lo, hi = S.t_interval(diff, c["level"])
    found += f"; per-item difference {diff.mean():+.2f} [{_lv(c['level'])} t {lo:+.2f}, {hi:+.2f}]"
    if hi < 0:
        return Outcome(CONTRADICTED, found)
    return Outcome(INCONCLUSIVE, found, "a fall within the items' noise: the interval of the per-item difference reaches 0")


def rule_factual_null_every_epoch(inp: ClaimInputs) -> Outcome:
    """All factual |d| < max_d over the sweep epochs; excluded when some epoch's δ_z interval lies outside ±max_d."""
    c, fac = params("factual_null_every_epoch"), _domain(inp.table1, "factual")
    if fac.empty:
        return Outcome(UNTESTABLE, "no factual rows in Table 1")
    d = fac[inp.d_col].abs()
    if d.isna().any():
        return Outcome(UNTESTABLE, f"{inp.d_col} undefined (no spread in Δ(ΔI)) at epochs {_list(int(e) for e in d.index[d.isna()])}")
    found = f"max |{inp.d_col}| = {d.max():.2f} (epoch {int(d.idxmax())}) over epochs {_list(int(e) for e in fac.index)}"
    if d.max() < c["max_d"]:
        return Outcome(CONSISTENT, found)
    outside = [int(e) for e, r in fac.iterrows() if min(map(abs, ci := _dz_ci(r.d_z, r.n, c["level"]))) > c["max_d"]
               and ci[0] * ci[1] > 0]
    if outside:
        return Outcome(CONTRADICTED, found + f"; the {_lv(c['level'])} interval of δ_z lies outside ±{c['max_d']} "
                       f"at epochs {_list(outside)}")
    n = int(fac.n.iloc[0])
    chance = 2 * sps.t.sf(c["max_d"] * math.sqrt(n), n - 1)
    return Outcome(INCONCLUSIVE, found, f"underpowered: every interval reaches into ±{c['max_d']}; with no true effect each "
                   f"|d_z| reaches {c['max_d']} with probability {chance:.2f} at n = {n}")


def _eval_loss(inp: ClaimInputs) -> pd.DataFrame:
    """The CoT adapter's eval_loss per epoch; rows of several adapters are refused unless one is named "CoT"."""
    if inp.epochs is None or "eval_loss" not in inp.epochs:
        return pd.DataFrame(columns=["epoch", "eval_loss"])
    ev = inp.epochs
    if "adapter" in ev and ev.adapter.nunique() > 1:
        if not (ev.adapter == "CoT").any():
            raise ValueError(f"training log: eval_loss rows of adapters {sorted(ev.adapter.unique())}: pass one adapter's rows")
        ev = ev[ev.adapter == "CoT"]
    if ev.epoch.duplicated().any():
        dup = sorted(ev.epoch[ev.epoch.duplicated()].unique())
        raise ValueError(f"training log: epochs {dup} appear twice: one adapter's rows expected")
    return ev.dropna(subset=["eval_loss"]).sort_values("epoch")


def rule_eval_loss_monotone(inp: ClaimInputs) -> Outcome:
    """eval_loss rises at every step; excluded by no overall rise, several falls, or one fall above max_dip."""
    c, ev = params("eval_loss_monotone"), _eval_loss(inp)
    if len(ev) < c["min_epochs"]:
        return Outcome(UNTESTABLE, f"{len(ev)} epochs with an eval_loss (need ≥ {c['min_epochs']:.0f})")
    loss = ev.eval_loss.to_numpy(float)
    rel = np.diff(loss) / loss[:-1]
    falls = [(int(e), -s) for e, s in zip(ev.epoch.iloc[1:], rel) if s <= 0]
    found = (f"{loss[0]:.2f} at epoch {int(ev.epoch.iloc[0])} → {loss[-1]:.2f} at epoch {int(ev.epoch.iloc[-1])}; "
             + ("falls or stays level at " + ", ".join(f"epoch {e} (by {100 * f:.1f} %)" for e, f in falls) if falls
                else "rises at every epoch"))
    if not falls:
        return Outcome(CONSISTENT, found)
    if loss[-1] <= loss[0] or len(falls) > c["max_dips"] or max(f for _, f in falls) > c["max_dip"]:
        return Outcome(CONTRADICTED, found)
    return Outcome(INCONCLUSIVE, found, f"one dip of at most {_lv(c['max_dip'])} in a rising curve; the eval_loss has no stated "
                   "uncertainty, so it neither matches 'monotone' nor excludes the rise")


def rule_checkpoint_choice(inp: ClaimInputs) -> Outcome:
    """Epochs of lowest eval_loss vs epochs of smallest literary Wilcoxon p (both with the declared tie rule)."""
    c, lit = params("checkpoint_choice"), _domain(inp.table1, "literary")
    ev = _eval_loss(inp)
    ev = ev[ev.epoch.isin(lit.index)]
    if len(ev) < 2:
        return Outcome(UNTESTABLE, f"eval_loss at {len(ev)} sweep epochs (need ≥ 2 to choose between)")
    by_loss = _ties(ev.set_index("epoch").eval_loss, c["tie_rtol"])
    by_ddi = _ties(lit.wilcoxon_p, c["tie_rtol"])
    p = float(lit.wilcoxon_p.min())
    found = (f"among sweep epochs {_list(int(e) for e in lit.index)}: lowest eval_loss at epoch {', '.join(map(str, by_loss))}; "
             f"smallest literary p at epoch {', '.join(map(str, by_ddi))} (p = {_p(p)})")
    if p >= c["alpha"]:
        return Outcome(INCONCLUSIVE, found, "moot: no sweep epoch is significant, so Δ(ΔI) selects nothing")
    if set(by_loss) & set(by_ddi):
        return Outcome(CONTRADICTED, found + "; both select the same epoch")
    return Outcome(CONSISTENT, found)


def _table2(inp: ClaimInputs) -> pd.DataFrame:
    return pd.DataFrame(columns=["domain"]) if inp.table2 is None else inp.table2.set_index("domain")


def rule_dlogp_all_fall(inp: ClaimInputs) -> Outcome:
    """Every Table 2 row's 95 % interval lies below 0; one lying above 0 excludes the claim."""
    t2 = _table2(inp)
    missing = [d for d in DLOGP_ROWS if d not in t2.index]
    if missing:
        return Outcome(UNTESTABLE, f"Table 2 rows missing: {', '.join(missing)}")
    rows = t2.loc[list(DLOGP_ROWS)]
    found = "; ".join(f"{d}: {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for d, r in rows.iterrows()) + f" ({inp.unit}/token)"
    if bool((rows.ci_high < 0).all()):
        return Outcome(CONSISTENT, found)
    if bool((rows.ci_low > 0).any()):
        return Outcome(CONTRADICTED, found)
    return Outcome(INCONCLUSIVE, found, "an interval contains 0")


def _sd(r: pd.Series) -> float:
    """sd of the per-passage Δ: the column if present, else recovered from the symmetric t-interval."""
    if "sd_delta" in r and not pd.isna(r.sd_delta):
        return float(r.sd_delta)
    return float((r.ci_high - r.ci_low) / 2 / sps.t.ppf(0.975, r.n - 1) * math.sqrt(r.n))


def rule_dlogp_literary_more(inp: ClaimInputs) -> Outcome:
    """Welch interval of (literary − factual combined) mean Δ log P: below 0 consistent, above 0 contradicted."""
    c, t2 = params("dlogp_literary_more"), _table2(inp)
    missing = [d for d in ("literary", "factual combined") if d not in t2.index]
    if missing:
        return Outcome(UNTESTABLE, f"Table 2 rows missing: {', '.join(missing)}")
    a, b = t2.loc["literary"], t2.loc["factual combined"]
    if a.n < 2 or b.n < 2:
        return Outcome(UNTESTABLE, f"{int(a.n)} literary and {int(b.n)} factual passages (need ≥ 2 each)")
    lo, hi, df = S.welch_ci_from_summary(a.delta, _sd(a), int(a.n), b.delta, _sd(b), int(b.n), c["level"])
    found = (f"literary {a.delta:+.3f} vs factual combined {b.delta:+.3f} {inp.unit}/token: difference "
             f"{a.delta - b.delta:+.3f}, Welch {_lv(c['level'])} [{lo:+.3f}, {hi:+.3f}] (df {df:.1f})")
    if hi < 0:
        return Outcome(CONSISTENT, found)
    return Outcome(CONTRADICTED, found) if lo > 0 else Outcome(INCONCLUSIVE, found, "the interval contains 0")


def rule_sharpening(inp: ClaimInputs) -> Outcome:
    """Conditional good−bad log-odds rise (Wilcoxon), unconditional ones move less than ``ratio`` as much."""
    c, ps, pe = params("sharpening"), inp.pair_scores, inp.primary_epoch
    if ps is None:
        return Outcome(UNTESTABLE, "no pair scores")
    lit = ps[ps.domain == "literary"]
    b, a = lit[lit.model == "base"].set_index("id"), lit[(lit.model != "base") & (lit.epoch == pe)].set_index("id")
    ids = a.index.intersection(b.index)
    if len(ids) < 2:
        return Outcome(UNTESTABLE, f"base and epoch {pe} share {len(ids)} literary items (need ≥ 2)")
    a, b, f = a.loc[ids], b.loc[ids], S.unit_factor(inp.unit)
    d_cond = f * ((a.logp_cond_good - a.logp_cond_bad) - (b.logp_cond_good - b.logp_cond_bad)).to_numpy(float)
    d_unc = f * ((a.logp_uncond_good - a.logp_uncond_bad) - (b.logp_uncond_good - b.logp_uncond_bad)).to_numpy(float)
    w = S.wilcoxon_greater(d_cond)
    lo, hi = S.t_interval(d_cond, c["level"])
    ratio = np.abs(d_unc).mean() / np.abs(d_cond).mean() if np.abs(d_cond).mean() > 0 else math.inf
    found = (f"literary, epoch {pe}: conditional log-odds moved {d_cond.mean():+.2f} {inp.unit} on average "
             f"[{_lv(c['level'])} t {lo:+.2f}, {hi:+.2f}], Wilcoxon p = {_p(w['wilcoxon_p'])}; mean |unconditional change| / "
             f"mean |conditional change| = {ratio:.2f}")
    up = bool(d_cond.mean() > 0 and w["wilcoxon_p"] < c["alpha"])
    if up and ratio < c["ratio"]:
        return Outcome(CONSISTENT, found)
    if hi < 0:
        return Outcome(CONTRADICTED, found + "; the in-context preference for the good option fell")
    return Outcome(INCONCLUSIVE, found, f"the unconditional part moved at least {c['ratio']} times as much" if up else
                   "the conditional change is not shown positive and its interval reaches 0")


def rule_training_time(inp: ClaimInputs) -> Outcome:
    """A GPU timing of the paper profile within factor × the paper's time (both declared)."""
    c, g = params("training_time"), inp.gpu_timing or {}
    limit = c["factor"] * c["paper_s"] / 60
    if "minutes" not in g:
        return Outcome(UNTESTABLE, "no GPU timing of the paper profile supplied")
    if g.get("profile") != "paper":
        return Outcome(UNTESTABLE, "the timing does not say it is of the paper profile" if "profile" not in g else
                       f"the timing supplied is of the {g['profile']!r} profile, not the paper's model")
    dev = str(g.get("device") or "")
    if not dev or dev.lower().startswith("cpu"):
        return Outcome(UNTESTABLE, f"the timing is not of a GPU (device {dev or 'not named'}): a GPU timing is required")
    m = float(g["minutes"])
    found = f"{m:.2f} min on {dev} (limit {c['factor']:g} × {c['paper_s'] / 60:.2f} = {limit:.2f} min; the paper's on one A800-80GB)"
    return Outcome(CONSISTENT if m <= limit else CONTRADICTED, found)


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


# ------------------------------------------------------------------------------------------ gate, seeds, table

def sensitivity_text(sens: dict[str, Any] | None) -> tuple[bool, str]:
    """(shown sensitive?, a short text) from the held-out positive control's detection."""
    if not sens:
        return False, "no held-out positive control"
    det = sens.get("detected") is True
    if sens.get("d_z") is None or sens.get("p") is None:  # the control ran but its effect could not be computed
        return False, f"held-out positive control ({sens.get('signal', '?')}): no effect could be computed"
    return det, (f"held-out positive control ({sens.get('signal', '?')}), epoch {sens.get('epoch')}, n = {sens.get('n')}: "
                 f"d_z = {float(sens['d_z']):.2f}, p = {_p(float(sens['p']))}, " + ("detected" if det else "not detected"))


def gate(o: Outcome, inp: ClaimInputs) -> Outcome:
    """A contradiction stands only if the held-out control shows the instrument sees a transferred effect."""
    ok, text = sensitivity_text(inp.sensitivity)
    o = o._replace(found=f"{o.found}; {text}")
    if o.verdict != CONTRADICTED or ok:
        return o
    return Outcome(INCONCLUSIVE, o.found, "instrument not shown sensitive on unseen items: the data exclude the paper's "
                   "pattern, but the held-out positive control " + ("did not detect its transferred effect" if inp.sensitivity
                                                                   else "is missing"))


def _seed_inputs(inp: ClaimInputs) -> dict[int, ClaimInputs]:
    """Each seed's inputs, every seed (the primary too) cut to the epochs all seeds were scored at, so that a
    difference of verdicts comes from the seeds and not from the extra seeds' shorter training."""
    tables = {inp.primary_seed: inp.table1, **{int(s): t for s, t in (inp.seed_tables or {}).items()}}
    common = set.intersection(*(set(t.epoch.astype(int)) for t in tables.values()))
    out = {}
    for s, t in sorted(tables.items()):
        items = inp.items if s == inp.primary_seed else (inp.seed_items or {}).get(s)
        out[s] = replace(inp, table1=t[t.epoch.isin(common)], pair_scores=inp.pair_scores if s == inp.primary_seed else None,
                         items=None if items is None else items[items.epoch.isin(common)])
    return out


def judge(claim: pd.Series | Any, inp: ClaimInputs) -> Outcome:
    """One claim's outcome: its rule, the held-out gate when declared, and per seed when declared."""
    rule = RULES.get(claim.id, rule_untestable(claim.why))
    one = (lambda i: gate(rule(i), i)) if claim.gate == HELD_OUT else rule
    if claim.per_seed != "yes" or not inp.seed_tables:
        return one(inp)
    primary = one(inp)  # the reported verdict: the primary seed on all its epochs
    res = {s: one(i) for s, i in _seed_inputs(inp).items()}  # compared on the epochs every seed reached
    tested = {s: o.verdict for s, o in res.items() if o.verdict != UNTESTABLE}
    per = ", ".join(f"seed {s} {v}" for s, v in tested.items())
    if primary.verdict == UNTESTABLE or len(set(tested.values())) <= 1:
        return primary._replace(found=primary.found + (f"; the same verdict at seeds {', '.join(map(str, tested))}"
                                                       if len(tested) > 1 else ""))
    return Outcome(INCONCLUSIVE, f"seed {inp.primary_seed} (primary): {primary.found}", f"seed-sensitive: {per}")


def verdict_text(o: Outcome) -> str:
    """The verdict in full: "consistent (effect only; …)", "inconclusive: underpowered: …"."""
    if not o.qualifier:
        return o.verdict
    return f"{o.verdict} ({o.qualifier})" if o.verdict == CONSISTENT else f"{o.verdict}: {o.qualifier}"


def evaluate(inp: ClaimInputs, crit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Apply every declared criterion to ``inp``: one row per claim, in the criteria file's order.

    Columns: id, claim, paper §, paper reports, this run, verdict, verdict_detail, central.
    """
    crit = criteria() if crit is None else crit
    rows = []
    for c in crit.itertuples(index=False):
        o = judge(c, inp)
        rows.append({"id": c.id, "claim": c.claim, "paper §": c.section, "paper reports": c.paper_value,
                     "this run": o.found, "verdict": o.verdict, "verdict_detail": verdict_text(o), "central": c.central == "yes"})
    return pd.DataFrame(rows)


def build_claims(table1: pd.DataFrame, table2: pd.DataFrame | None, epochs: pd.DataFrame | None,
                 pair_scores: pd.DataFrame | None, primary_epoch: int, d_col: str = "d_z", setting: str = "", *,
                 items: pd.DataFrame | None = None, control_table1: pd.DataFrame | None = None,
                 control_epoch: int | None = None, ablation_items: pd.DataFrame | None = None,
                 gpu_timing: dict[str, Any] | None = None, sensitivity: dict[str, Any] | None = None,
                 seed_tables: dict[int, pd.DataFrame] | None = None, seed_items: dict[int, pd.DataFrame] | None = None,
                 primary_seed: int = 42, selection: pd.DataFrame | None = None, scale: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim's verdict from this run's tables (see :func:`evaluate` for the columns).

    ``setting`` goes to ``df.attrs["caveats"]``; render :func:`shared_caveats` once. ``items`` defaults to
    the per-item Δ(ΔI) computed from ``pair_scores`` in Table 1's unit.
    """
    unit = str(table1["unit"].iloc[0]) if "unit" in table1 and len(table1) else "bits"
    inp = ClaimInputs(table1, table2, epochs, pair_scores, items, primary_epoch, d_col, control_table1, control_epoch,
                      ablation_items, gpu_timing, unit, sensitivity, seed_tables, seed_items, primary_seed, selection, scale)
    df = evaluate(inp)
    df.attrs["caveats"] = shared_caveats(setting)
    return df


def seed_tables_from_items(items: pd.DataFrame, seeds: list[int]) -> tuple[dict[int, pd.DataFrame], dict[int, pd.DataFrame]]:
    """Per seed, Table 1 and the per-item Δ(ΔI), from notebook 05's items (adapter "CoT" is ``seeds[0]``,
    "CoT seed N" the others). Table 1 rows are recomputed with :func:`stats.paired_tests` per (epoch, domain)."""
    tables, by_seed = {}, {}
    for s in seeds:
        g = items[items.adapter == ("CoT" if s == seeds[0] else f"CoT seed {s}")]
        if g.empty:
            continue
        rows = [{"epoch": int(e), "domain": d, **S.paired_tests(h.dI_lora.to_numpy(), h.dI_base.to_numpy())}
                for (e, d), h in g.groupby(["epoch", "domain"])]
        t = pd.DataFrame(rows)
        t["holm_p"] = t.groupby("domain").wilcoxon_p.transform(lambda p: S.holm(p.to_numpy()))
        tables[int(s)], by_seed[int(s)] = t, g.drop(columns="adapter")
    return tables, by_seed


def summary(claims: pd.DataFrame) -> dict[str, Any]:
    """The status and counts: [Re] when every central claim is consistent, [¬Re] when a central claim is
    contradicted, else inconclusive; ``sentence`` says which claims made it so, ``vocabulary`` what the four
    verdicts mean."""
    central = claims[claims.central.astype(bool)] if "central" in claims else claims[claims.id == "literary_effect"]
    names = central.claim if "claim" in central else central.id
    v = list(zip(names, central.verdict))
    if any(x == CONTRADICTED for _, x in v):
        status, why = "[¬Re]", "a central claim is contradicted"
    elif v and all(x == CONSISTENT for _, x in v):
        status, why = "[Re]", "every central claim is consistent"
    else:
        status, why = "inconclusive", "no central claim is contradicted and not every one is consistent"
    sentence = f"{why[0].upper()}{why[1:]}: " + "; ".join(f"{k} — {x}" for k, x in v) + "."
    counts = {k: int(n) for k, n in claims.verdict.value_counts().items()}
    return {"status": status, "sentence": sentence, "counts": counts, "vocabulary": VOCABULARY}


# ------------------------------------------------------------------------------------------ §6.6 and §4.4 rules
# Judged from the held-out selection (notebook 05) and the data-scale sweep (notebook 09), each from its own table.
# Outcomes: "consistent", "contradicted", "inconclusive", "cannot be tested here".

HELDOUT_CHOOSER = "held-out calibration Δ(ΔI)"
def rule_heldout_selection(selection: pd.DataFrame | None) -> Outcome:
    """§6.6: at the epoch chosen on the calibration pairs, does the benchmark show the literary effect?

    ``selection``: :func:`cqa_utils.method.epoch_scoring.selection_table` (columns chosen by, epoch, domain, n,
    delta, ci_low, ci_high, wilcoxon_p, unit). Consistent: benchmark literary mean Δ(ΔI) > 0 with one-sided
    Wilcoxon p < the declared alpha at that epoch. Contradicted: its bootstrap 95 % CI lies entirely at or below 0.
    Inconclusive: neither. Cannot be tested: no held-out choice, or the benchmark was not scored at it.
    """
    if selection is None or selection.empty:
        return Outcome(UNTESTABLE, "no held-out selection table")
    r = selection[(selection["chosen by"] == HELDOUT_CHOOSER) & (selection.domain == "literary")]
    if r.empty or int(r.iloc[0].n) < 2 or pd.isna(r.iloc[0].wilcoxon_p):
        return Outcome(UNTESTABLE, "the benchmark's literary pairs were not scored at the epoch chosen on the calibration pairs")
    r, alpha = r.iloc[0], params("heldout_selection")["alpha"]
    found = (f"epoch {int(r.epoch)} chosen on the calibration pairs; benchmark literary Δ(ΔI) there = {r.delta:+.2f} "
             f"{r.unit} [bootstrap 95 % {r.ci_low:+.2f}, {r.ci_high:+.2f}], one-sided Wilcoxon p = {_p(r.wilcoxon_p)} (n = {int(r.n)})")
    if r.delta > 0 and r.wilcoxon_p < alpha:
        return Outcome(CONSISTENT, found)
    if r.ci_high <= 0:
        return Outcome(CONTRADICTED, found, "the interval excludes any positive literary effect")
    return Outcome(INCONCLUSIVE, found, "not detected, not excluded")


def rule_scale_saturation(scale: pd.DataFrame | None, compared_rows: int | None = None) -> Outcome:
    """§4.4 / §5.4: ~100 samples suffice, the effect saturating near the full training set.

    ``scale``: :func:`cqa_utils.method.epoch_scoring.scale_table` (n_rows, domain, delta, ci_low, ci_high,
    wilcoxon_p, unit); the largest n_rows is the full set. Judged on the literary group:
    consistent: the full-size effect is detected (mean > 0, one-sided Wilcoxon p < the declared alpha) and the mean at
    ``compared_rows`` lies inside the full-size bootstrap 95 % CI (no resolvable gain from the last rows);
    contradicted: detected at full size and the ``compared_rows`` mean lies below that CI (still rising: not
    saturated); inconclusive: no effect detected at full size (nothing to saturate), or the ``compared_rows``
    mean lies above the CI. Cannot be tested: the full-size or the ``compared_rows`` row is missing.
    """
    declared = params("scale_saturation")
    compared_rows, alpha = int(compared_rows or declared["compared_rows"]), declared["alpha"]
    if scale is None or scale.empty:
        return Outcome(UNTESTABLE, "no scale sweep")
    lit = scale[scale.domain == "literary"].set_index("n_rows").sort_index()
    if lit.empty or compared_rows not in lit.index or lit.index.max() <= compared_rows:
        have = [int(n) for n in lit.index]
        return Outcome(UNTESTABLE, f"need literary rows at {compared_rows} and at a larger full size; have {_list(have) or 'none'}")
    full_n = int(lit.index.max())
    f, m = lit.loc[full_n], lit.loc[compared_rows]
    unit = f.unit if "unit" in lit else ""
    found = (f"literary Δ(ΔI): {m.delta:+.2f} {unit} at {compared_rows} rows; {f.delta:+.2f} {unit} at the full {full_n} rows "
             f"[bootstrap 95 % {f.ci_low:+.2f}, {f.ci_high:+.2f}], one-sided Wilcoxon p = {_p(f.wilcoxon_p)}; "
             + ", ".join(f"{int(n)} rows {r.delta:+.2f}" for n, r in lit.iterrows()))
    if not (f.delta > 0 and f.wilcoxon_p < alpha):
        return Outcome(INCONCLUSIVE, found, "no effect detected at full size: nothing to saturate")
    if f.ci_low <= m.delta <= f.ci_high:
        return Outcome(CONSISTENT, found)
    if m.delta < f.ci_low:
        return Outcome(CONTRADICTED, found, f"still rising from {compared_rows} rows to the full set")
    return Outcome(INCONCLUSIVE, found, f"the effect at {compared_rows} rows exceeds the full-size interval")


TABLE_RULES: dict[str, Callable[[pd.DataFrame | None], Outcome]] = {
    "heldout_selection": rule_heldout_selection,  # notebook 05, selection.csv
    "scale_saturation": rule_scale_saturation,  # notebook 09, scale.csv
}
RULES.update({"heldout_selection": lambda inp: rule_heldout_selection(inp.selection),
              "scale_saturation": lambda inp: rule_scale_saturation(inp.scale)})

"""Where a change of ΔI comes from, which part decides its sign, and one concrete hypothesis for a negative effect.

Scores are log-probabilities in nats; every function that returns a change takes the ``unit`` it is
reported in (bits by default, as Table 1).

For a pair, ΔI = I(good) − I(bad) = [log P(good|y) − log P(bad|y)] − [log P(good) − log P(bad)]:
the conditional log-odds minus the unconditional log-odds. So per item

    Δ(ΔI) = Δ(conditional log-odds) − Δ(unconditional log-odds),

and a negative Δ(ΔI) arises either because the context-given preference moved toward the bad
option, or because fine-tuning made the good option's wording *on its own* relatively more likely
(the unconditional part rose), which I then subtracts.

Hypothesis tested here (the "quoting" hypothesis): the training judgments quote and discuss the
rejected candidates, so fine-tuning raises the probability of wording like theirs; pairs whose bad
option shares more vocabulary with the training targets should then lose more ΔI. This module
counts the quoting and measures each option's vocabulary overlap with the training targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cqa_utils.method.stats import unit_factor
from cqa_utils.method.text import words as text_words

#: Function words left out of the overlap measure (they are shared by any two English texts).
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is was were be been are it its this that these those "
    "he she they we you i his her their our your my me him them us not no so than then there here what which who whom "
    "had has have do did does into out up down over under again just very can could would should will may might must "
    "all any some each one two s t".split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return text_words(text, strip_quotes=False)


def content_words(text: str) -> set[str]:
    """Distinct lower-cased words of a text, without function words."""
    return {w for w in words(text) if w not in STOPWORDS and len(w) > 1}


def ddi_parts(scores: pd.DataFrame, unit: str = "bits") -> pd.DataFrame:
    """Per (epoch, item): Δ of the conditional and unconditional log-odds of good vs bad, in ``unit``.

    ``scores`` has one row per (model, item) with ``model`` ("base" or "epoch-N"), ``epoch``, ``id``,
    ``domain`` and the four log-probabilities (nats, as scored). Returns ``d_cond``, ``d_uncond`` and
    ``ddI = d_cond − d_uncond`` (equal to the Δ(ΔI) of Table 1 in the same unit up to rounding), and ``unit``.
    """
    f = unit_factor(unit)
    s = scores.assign(cond=scores.logp_cond_good - scores.logp_cond_bad,
                      uncond=scores.logp_uncond_good - scores.logp_uncond_bad)
    base = s[s.model == "base"].set_index("id")
    out = []
    for epoch, g in s[s.model != "base"].groupby("epoch"):
        g = g.set_index("id")
        b = base.loc[g.index]
        out.append(pd.DataFrame({"epoch": int(epoch), "id": g.index, "domain": g.domain.to_numpy(),
                                 "d_cond": f * (g.cond - b.cond).to_numpy(), "d_uncond": f * (g.uncond - b.uncond).to_numpy()}))
    df = pd.concat(out, ignore_index=True)
    return df.assign(ddI=df.d_cond - df.d_uncond, unit=unit)


def quoted_candidates(train_rows: Sequence[dict[str, Any]], n: int = 4) -> pd.DataFrame:
    """Per training row with a decision: does its target quote the chosen / a rejected candidate?

    A quote is any run of ``n`` consecutive words of a candidate appearing in the target text.
    """
    rows = []
    for r in train_rows:
        d = r.get("decision")
        if not d:
            continue
        target = " ".join(words(r["output"]))
        spans = [{" ".join(w[k:k + n]) for k in range(len(w) - n + 1)} for w in map(words, d["candidates"])]
        hits = [any(f" {s} " in f" {target} " for s in sp) for sp in spans]
        ch = d["expert_choice"]
        rows.append({"id": r["id"], "quotes_chosen": hits[ch],
                     "quotes_rejected": any(h for i, h in enumerate(hits) if i != ch),
                     "n_rejected_quoted": sum(h for i, h in enumerate(hits) if i != ch)})
    return pd.DataFrame(rows)


def option_overlap(pairs: Sequence[dict[str, Any]], targets: Sequence[str]) -> pd.DataFrame:
    """Per pair: the share of each option's content words that occur in the training targets.

    ``overlap_diff = overlap_bad − overlap_good``: positive when the bad option's vocabulary is the
    one the training targets use more.
    """
    vocab: set[str] = set()
    for t in targets:
        vocab |= content_words(t)
    rows = []
    for p in pairs:
        share = {}
        for side in ("good", "bad"):
            cw = content_words(p[side])
            share[side] = len(cw & vocab) / len(cw) if cw else np.nan
        rows.append({"id": p["id"], "domain": p["domain"], "overlap_good": share["good"], "overlap_bad": share["bad"],
                     "overlap_diff": share["bad"] - share["good"]})
    return pd.DataFrame(rows)


PAPER_ACCOUNT = "the paper's account (conditional sharpening toward the good option: H(X|Y) changes, H(X) stays put)"


def sign_of_effect(which: pd.DataFrame, epoch: int, unit: str, adapter: str = "CoT", domain: str = "literary") -> dict[str, Any]:
    """Which part decides the sign of the mean Δ(ΔI), by the signed contributions (not by mean |change|).

    Per item Δ(ΔI) = d_cond − d_uncond, so mean Δ(ΔI) = mean d_cond + (−mean d_uncond): the conditional part
    contributes mean d_cond, the unconditional part −mean d_uncond. The part that decides the sign is the one
    whose contribution has the sign of the total and is the larger of the two in that direction (when the two
    contributions have opposite signs, the one with the total's sign; when the same, the larger). The paper's
    account holds iff the conditional log-odds rose (mean d_cond > 0) and the conditional part decides the sign.
    ``which``: per adapter and domain "mean d_cond", "mean d_uncond", "mean |d_cond|", "mean |d_uncond|", in
    ``unit``. Returns the fields and a ``sentence``; ``sign_decided_by`` is None when the row is missing.
    """
    w = which[(which.adapter == adapter) & (which.domain == domain)]
    if w.empty:
        return {"sign_decided_by": None, "matches_paper": None,
                "sentence": f"No {domain} items for the {adapter} adapter: nothing to explain."}
    w = w.iloc[0]
    mc, mu = float(w["mean d_cond"]), float(w["mean d_uncond"])
    c_cond, c_unc = mc, -mu
    total = c_cond + c_unc
    if total == 0:
        decider = "neither"
    elif c_cond * total > 0 and c_unc * total > 0:  # both push the total's way: the larger decides
        decider = "conditional" if abs(c_cond) >= abs(c_unc) else "unconditional"
    else:  # opposite ways (or one is 0): the one with the total's sign
        decider = "conditional" if c_cond * total > 0 else "unconditional"
    matches = bool(mc > 0 and decider == "conditional")
    u = unit
    out = (f"At epoch {epoch} the {adapter} adapter's {domain} Δ(ΔI) averages {total:+.2f} {u} = mean conditional change "
           f"({mc:+.2f} {u}) − mean unconditional change ({mu:+.2f} {u}). ")
    if decider == "neither":
        out += "The two parts cancel exactly: no part decides a sign. "
    else:
        other = "unconditional" if decider == "conditional" else "conditional"
        mine, theirs = (c_cond, c_unc) if decider == "conditional" else (c_unc, c_cond)
        out += (f"The sign is decided by the **{decider}** part: it contributes {mine:+.2f} {u} to the mean, the {other} "
                f"part {theirs:+.2f} {u} (the unconditional change enters with a minus sign)"
                + ("; both push the same way and the " + decider + " part pushes more. " if mine * theirs > 0 else
                   "; the other part pushes the opposite way. "))
    out += (f"This matches {PAPER_ACCOUNT}: the conditional log-odds rose and carry the sign. " if matches else
            f"This does **not** match {PAPER_ACCOUNT}: "
            + (f"the in-context preference for the good option fell ({mc:+.2f} {u}). " if mc <= 0 else
               "the conditional log-odds rose, but the unconditional part decides the sign. "))
    out += (f"How much each part moves per item (mean |change|: conditional {w['mean |d_cond|']:.2f} {u}, unconditional "
            f"{w['mean |d_uncond|']:.2f} {u}) does not decide the sign of the mean.")
    return {"epoch": epoch, "unit": u, "mean_ddI": total, "mean_d_cond": mc, "mean_d_uncond": mu,
            "contribution_cond": c_cond, "contribution_uncond": c_unc, "sign_decided_by": decider,
            "matches_paper": matches, "sentence": out}


def explain(which: pd.DataFrame, tests: pd.DataFrame, epoch: int, alpha: float = 0.05, unit: str = "bits") -> dict[str, Any]:
    """A verdict, in words and fields, from the parts table and the quoting test (CoT adapter, literary).

    ``which``: per adapter and domain the mean and mean absolute d_cond / d_uncond, in ``unit``; ``tests``:
    the Spearman test rows. The sentence says which part decides the sign of the literary effect
    (:func:`sign_of_effect`), whether that matches the paper's account, and whether the quoting hypothesis
    is supported (one-sided p < ``alpha``) or not.
    """
    t = tests[(tests.adapter == "CoT") & (tests.domain == "literary")]
    sign = sign_of_effect(which, epoch, unit)
    if sign["sign_decided_by"] is None or t.empty:
        return {"supported": None, "sentence": "No literary items for the CoT adapter: nothing to explain."}
    t = t.iloc[0]
    rho, p = float(t["spearman(overlap_diff, ddI)"]), float(t["one-sided p (rho < 0)"])
    supported = bool(p < alpha and rho < 0)
    sentence = sign["sentence"] + " " + (
        f"The quoting hypothesis is **supported**: pairs whose bad option shares more vocabulary with the training "
        f"targets lose more ΔI (Spearman ρ = {rho:+.2f}, one-sided p = {p:.3f})." if supported else
        f"The quoting hypothesis is **not supported** by this test (Spearman ρ = {rho:+.2f}, one-sided p = {p:.3f}): "
        "vocabulary overlap with the training targets does not predict which pairs lose ΔI.")
    return sign | {"supported": supported, "rho": rho, "p": p, "sentence": sentence}

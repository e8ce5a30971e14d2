"""Where a change of ΔI comes from, and one concrete hypothesis for a negative literary effect.

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


def ddi_parts(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (epoch, item): Δ of the conditional and unconditional log-odds of good vs bad, in nats.

    ``scores`` has one row per (model, item) with ``model`` ("base" or "epoch-N"), ``epoch``, ``id``,
    ``domain`` and the four log-probabilities. Returns ``d_cond``, ``d_uncond`` and
    ``ddI = d_cond − d_uncond`` (equal to the Δ(ΔI) of Table 1 up to rounding).
    """
    s = scores.assign(cond=scores.logp_cond_good - scores.logp_cond_bad,
                      uncond=scores.logp_uncond_good - scores.logp_uncond_bad)
    base = s[s.model == "base"].set_index("id")
    out = []
    for epoch, g in s[s.model != "base"].groupby("epoch"):
        g = g.set_index("id")
        b = base.loc[g.index]
        out.append(pd.DataFrame({"epoch": int(epoch), "id": g.index, "domain": g.domain.to_numpy(),
                                 "d_cond": (g.cond - b.cond).to_numpy(), "d_uncond": (g.uncond - b.uncond).to_numpy()}))
    df = pd.concat(out, ignore_index=True)
    return df.assign(ddI=df.d_cond - df.d_uncond)


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


def explain(which: pd.DataFrame, tests: pd.DataFrame, epoch: int, alpha: float = 0.05) -> dict[str, Any]:
    """A verdict, in words and fields, from the parts table and the quoting test (CoT adapter, literary).

    ``which``: per adapter and domain the mean and mean absolute d_cond / d_uncond; ``tests``: the
    Spearman test rows. The sentence states the sign of the literary effect, the part that moves more,
    and whether the quoting hypothesis is supported (one-sided p < ``alpha``) or not.
    """
    w = which[(which.adapter == "CoT") & (which.domain == "literary")]
    t = tests[(tests.adapter == "CoT") & (tests.domain == "literary")]
    if w.empty or t.empty:
        return {"supported": None, "sentence": "No literary items for the CoT adapter: nothing to explain."}
    w, t = w.iloc[0], t.iloc[0]
    mean_ddi = w["mean d_cond"] - w["mean d_uncond"]
    driver = "unconditional" if w["mean |d_uncond|"] > w["mean |d_cond|"] else "conditional"
    rho, p = float(t["spearman(overlap_diff, ddI)"]), float(t["one-sided p (rho < 0)"])
    supported = bool(p < alpha and rho < 0)
    sentence = (
        f"At epoch {epoch} the literary Δ(ΔI) of the CoT adapter averages {mean_ddi:+.2f} "
        f"(conditional part {w['mean d_cond']:+.2f}, unconditional part {w['mean d_uncond']:+.2f}); the "
        f"**{driver}** log-odds move more (mean |change|: conditional {w['mean |d_cond|']:.2f}, unconditional "
        f"{w['mean |d_uncond|']:.2f}; "
        f"the unconditional part is larger in {int(w['items where |d_uncond| > |d_cond|'])} of {int(w['n'])} items). "
        + (f"The quoting hypothesis is **supported**: pairs whose bad option shares more vocabulary with the training "
           f"targets lose more ΔI (Spearman ρ = {rho:+.2f}, one-sided p = {p:.3f})." if supported else
           f"The quoting hypothesis is **not supported** by this test (Spearman ρ = {rho:+.2f}, one-sided p = {p:.3f}): "
           "vocabulary overlap with the training targets does not predict which pairs lose ΔI."))
    return {"supported": supported, "driver": driver, "mean_ddI": mean_ddi, "rho": rho, "p": p, "epoch": epoch,
            "sentence": sentence}

"""§3.3.1 KL prescreen: how far the pretrained model's choice distribution is from the expert's.

For each decision point the expert's distribution is one-hot on the expert's choice, so
KL(P_expert ‖ P_pretrained) = −log P_pretrained(choice): finite whenever the model's probability of the
choice is positive, and computed in log space as logsumexp(scores) − scores[choice] (the negative
log-softmax). Nothing is smoothed: smoothing the expert side with ε makes the KL non-monotone in the
model's margin for the expert's choice (a very confident right model scored worse than a uniform one).

P_pretrained over a decision's candidates is the softmax of one score per candidate, three ways:

* ``raw``: log P(c | context), summed over the candidate's tokens;
* ``norm``: the same divided by the candidate's token count (mean log-prob per token; a heuristic
  against length);
* ``pmi``: log P(c | context) − log P(c), the paper's own I(x; y) (the candidate's tokens scored after
  the context and after the prefix token alone, the same token ids both times).

Decision points are ranked by KL in nats, largest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from cqa_utils.method.scoring import Request, Scorer

VARIANTS = ("raw", "norm", "pmi")
VARIANT_TEXT = {"raw": "log P(c | context), summed over the candidate's tokens",
                "norm": "the same per token (a labelled heuristic against length)",
                "pmi": "log P(c | context) − log P(c): the paper's own I(x; y) (default)"}
RANK_BY = tuple(f"kl_{v}" for v in VARIANTS)
DEFAULT_RANK_BY = "kl_pmi"


def kl_one_hot(scores: Sequence[float], choice: int) -> float:
    """KL(one-hot on ``choice`` ‖ softmax(scores)) in nats = logsumexp(scores) − scores[choice].

    Computed as log Σ_j exp(s_j − s_choice); when the choice has the top score this is
    log1p(Σ_{j≠choice} exp(s_j − s_choice)), which keeps tiny divergences (large margins) exact.
    """
    s = np.asarray(scores, float)
    if not 0 <= choice < s.size:
        raise ValueError(f"expert choice {choice} out of range for {s.size} candidates")
    d = np.delete(s - s[choice], choice)
    if d.size and d.max() > 0:
        return float(logsumexp(np.append(d, 0.0)))
    return float(np.log1p(np.exp(d).sum()))


def kl(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p ‖ q) in nats for general distributions, with 0·log 0 = 0."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = p > 0
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def decision_scores(total: Sequence[float], uncond: Sequence[float], n_tokens: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-candidate scores of each variant (see the module docstring)."""
    t, u, n = (np.asarray(x, float) for x in (total, uncond, n_tokens))
    return {"raw": t, "norm": t / n, "pmi": t - u}


def prescreen(scorer: Scorer, rows: Sequence[dict[str, Any]], rank_by: str = DEFAULT_RANK_BY) -> pd.DataFrame:
    """Score every decision's candidates and rank the decision points by ``rank_by`` (largest KL first).

    Default ``kl_pmi``: PMI is the quantity the paper's own metric is built on, and it removes what the
    raw sum mostly measures here. Candidates of one decision differ in length by up to ~1.7×, so their
    summed log-probs differ by tens of nats whatever the context says; subtracting each candidate's
    unconditional log-prob cancels its length and word frequency and leaves how much the context favours
    it. The per-token mean is kept as a labelled heuristic (it only divides the length effect away).

    Columns: id, rank, n_candidates, expert_choice, then per variant v in raw/norm/pmi: kl_v,
    p_expert_choice_v, model_argmax_v; kl_uniform (= log k); logp_candidates, logp_uncond_candidates,
    n_tokens_candidates.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, found {rank_by!r}")
    reqs, owners = [], []
    for i, r in enumerate(rows):
        d = r.get("decision")
        if not d:
            continue
        for c in d["candidates"]:
            reqs += [Request(d["context"], c), Request(d["context"], c, conditional=False)]
            owners.append(i)
    scored = scorer.loglikelihood(reqs)
    by_row: dict[int, list[tuple[Any, Any]]] = {}
    for k, i in enumerate(owners):
        by_row.setdefault(i, []).append((scored[2 * k], scored[2 * k + 1]))
    out = []
    for i, ss in by_row.items():
        ch = rows[i]["decision"]["expert_choice"]
        total, uncond, n = [c.total for c, _ in ss], [u.total for _, u in ss], [c.n for c, _ in ss]
        rec: dict[str, Any] = {"id": rows[i]["id"], "n_candidates": len(ss), "expert_choice": ch}
        for v, s in decision_scores(total, uncond, n).items():
            k = kl_one_hot(s, ch)
            rec |= {f"kl_{v}": k, f"p_expert_choice_{v}": float(np.exp(-k)), f"model_argmax_{v}": int(np.argmax(s))}
        rec |= {"kl_uniform": float(np.log(len(ss))), "logp_candidates": total, "logp_uncond_candidates": uncond,
                "n_tokens_candidates": n}
        out.append(rec)
    df = pd.DataFrame(out).sort_values(rank_by, ascending=False, ignore_index=True)
    df.insert(1, "rank", np.arange(1, len(df) + 1))
    return df


def keep_top_k(ranking: pd.DataFrame, k: int | None) -> set[str]:
    """Ids of the k highest-KL decision points (None or 0: keep all, as the paper trained on all)."""
    if not k:
        return set(ranking.id)
    return set(ranking.nsmallest(k, "rank").id)

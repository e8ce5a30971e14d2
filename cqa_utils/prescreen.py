"""§3.3.1 KL prescreen: how far the pretrained model's choice distribution is from the expert's.

For each decision point, P_pretrained over its candidates is the softmax of log P(candidate |
context) (raw sums, and length-normalised: mean log-prob per token); P_expert puts 1 − ε on the
expert's choice and spreads ε over the others so the divergence stays finite. Decision points are
ranked by KL(P_expert ‖ P_pretrained), in nats, by default on the length-normalised distribution:
candidates differ in length by up to ~1.7×, and raw sums of log-probs then differ by tens of nats,
so the raw softmax mostly measures which candidate is shortest (both columns are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .scoring import loglikelihood
from .stats import softmax

EPSILON = 0.01


def expert_distribution(k: int, choice: int, epsilon: float = EPSILON) -> np.ndarray:
    """1 − ε on the expert's choice, ε/(k−1) on each other candidate (ε = 0: one-hot)."""
    if not 0 <= choice < k:
        raise ValueError(f"expert choice {choice} out of range for {k} candidates")
    p = np.full(k, epsilon / (k - 1))
    p[choice] = 1.0 - epsilon
    return p


def kl(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p ‖ q) in nats, with 0·log 0 = 0."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    m = p > 0
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


RANK_BY = ("kl_norm", "kl_raw")


def prescreen(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], prefix_id: int,
              epsilon: float = EPSILON, max_tokens: int = 4096, rank_by: str = "kl_norm") -> pd.DataFrame:
    """Score every decision's candidates and rank the decision points by ``rank_by`` (largest KL first)."""
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, found {rank_by!r}")
    reqs, owners = [], []
    for i, r in enumerate(rows):
        d = r.get("decision")
        if not d:
            continue
        for c in d["candidates"]:
            reqs.append((d["context"], c))
            owners.append(i)
    scored = loglikelihood(model, tokenizer, reqs, prefix_id, max_tokens)
    by_row: dict[int, list[Any]] = {}
    for i, s in zip(owners, scored):
        by_row.setdefault(i, []).append(s)
    out = []
    for i, ss in by_row.items():
        d = rows[i]["decision"]
        k, ch = len(ss), d["expert_choice"]
        raw = softmax([s.total for s in ss])
        norm = softmax([s.total / s.n for s in ss])
        pe = expert_distribution(k, ch, epsilon)
        out.append({
            "id": rows[i]["id"], "n_candidates": k, "expert_choice": ch,
            "p_expert_choice_raw": raw[ch], "p_expert_choice_norm": norm[ch],
            "model_argmax_raw": int(raw.argmax()), "model_argmax_norm": int(norm.argmax()),
            "kl_raw": kl(pe, raw), "kl_norm": kl(pe, norm),
            "kl_uniform": kl(pe, np.full(k, 1 / k)),
            "logp_candidates": [s.total for s in ss], "n_tokens_candidates": [s.n for s in ss],
        })
    df = pd.DataFrame(out).sort_values(rank_by, ascending=False, ignore_index=True)
    df.insert(1, "rank", np.arange(1, len(df) + 1))
    return df


def keep_top_k(ranking: pd.DataFrame, k: int | None) -> set[str]:
    """Ids of the k highest-KL decision points (None or 0: keep all, as the paper trained on all)."""
    if not k:
        return set(ranking.id)
    return set(ranking.nsmallest(k, "rank").id)

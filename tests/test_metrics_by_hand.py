"""I, ΔI, Δ(ΔI), per-token log P and Figure 2's distributions against values computed by hand.

The "model" is a bigram table written out as explicit probabilities: the next token depends only on
the current one, P(next | current) = TABLE[current][next]. Every expected log-probability below is
math.log of those numbers, so the scorer is checked against arithmetic, not against itself.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from cqa_utils.method import figures, scoring, stats

VOCAB = ["<eot>", "The", " cat", " sat", " ran", " on", " the", " mat", "."]
ID = {t: i for i, t in enumerate(VOCAB)}
V = len(VOCAB)


def table(bumps: dict[tuple[str, str], float]) -> list[list[float]]:
    """Rows of P(next | current): 0.05 on each token, plus the given extra mass; each row sums to 1."""
    rows = []
    for cur in VOCAB:
        extra = {nxt: b for (c, nxt), b in bumps.items() if c == cur}
        free = 1.0 - sum(extra.values())
        rows.append([free / V + extra.get(nxt, 0.0) for nxt in VOCAB])
    return rows


BASE = table({("<eot>", "The"): 0.3, (" cat", " sat"): 0.2, (" cat", " ran"): 0.3, (" sat", " on"): 0.4, (" on", " the"): 0.5,
              (" the", " mat"): 0.4, ("<eot>", " sat"): 0.1, ("<eot>", " ran"): 0.2})
TUNED = table({("<eot>", "The"): 0.3, (" cat", " sat"): 0.5, (" cat", " ran"): 0.1, (" sat", " on"): 0.4, (" on", " the"): 0.5,
               (" the", " mat"): 0.6, ("<eot>", " sat"): 0.1, ("<eot>", " ran"): 0.2})


class Tok:
    """Word-level tokenizer over VOCAB: a token is an optional leading space and a word or full stop."""

    def __call__(self, s: str, add_special_tokens: bool = False):
        return SimpleNamespace(input_ids=[ID[t] for t in re.findall(r" ?[A-Za-z]+|\.", s)])


class Decoder(torch.nn.Module):
    def forward(self, input_ids, **_):
        return SimpleNamespace(last_hidden_state=torch.nn.functional.one_hot(input_ids, V).float())


class Bigram(torch.nn.Module):
    """hidden = one-hot of the current token; logits = log P(next | current) + a per-row constant (cancels)."""

    def __init__(self, probs: list[list[float]]):
        super().__init__()
        self.config = SimpleNamespace(max_position_embeddings=64)
        self.decoder = Decoder()
        self.head = torch.nn.Linear(V, V, bias=False)
        logits = torch.log(torch.tensor(probs, dtype=torch.float64)) + torch.arange(V, dtype=torch.float64)[:, None]
        self.head.weight.data = logits.T.float()

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head


def logp(probs: list[list[float]], prev: str, tokens: list[str]) -> float:
    """Σ log P(token | previous token), starting after ``prev``."""
    out = 0.0
    for t in tokens:
        out += math.log(probs[ID[prev]][ID[t]])
        prev = t
    return out


PAIRS = [  # context "The cat"; x scored as " " + option; unconditional: after <eot> alone
    {"id": "p1", "domain": "literary", "context": "The cat", "good": "sat on the mat", "bad": "ran"},
    {"id": "p2", "domain": "literary", "context": "The cat sat", "good": "on the mat.", "bad": "ran"},
    {"id": "p3", "domain": "factual", "context": "The cat", "good": "ran", "bad": "sat"},
    {"id": "p4", "domain": "factual", "context": "The cat sat", "good": "on the mat", "bad": "on the cat"},
]


def split(s: str) -> list[str]:
    return [VOCAB[i] for i in Tok()(s).input_ids]


def hand_I(probs: list[list[float]], pair: dict, opt: str) -> float:
    x = split(" " + pair[opt])
    return logp(probs, split(pair["context"])[-1], x) - logp(probs, "<eot>", x)


@pytest.mark.parametrize("probs", [BASE, TUNED])
def test_pair_information_by_hand(probs):
    got = scoring.Scorer(Bigram(probs), Tok(), ID["<eot>"], max_length=4096, share_context=False).pairs(PAIRS).set_index("id")
    for p in PAIRS:
        g = got.loc[p["id"]]
        x = split(" " + p["good"])
        assert g.logp_cond_good == pytest.approx(logp(probs, split(p["context"])[-1], x), abs=1e-5)
        assert g.logp_uncond_good == pytest.approx(logp(probs, "<eot>", x), abs=1e-5)
        assert g.n_tokens_good == len(x)
        assert g.I_good == pytest.approx(hand_I(probs, p, "good"), abs=1e-5)
        assert g.dI == pytest.approx(hand_I(probs, p, "good") - hand_I(probs, p, "bad"), abs=1e-5)
    # in a bigram model only the first token of x sees the context: I = log P(x1|last ctx token) − log P(x1|<eot>)
    assert got.loc["p1", "I_good"] == pytest.approx(math.log(probs[ID[" cat"]][ID[" sat"]] / probs[ID["<eot>"]][ID[" sat"]]), abs=1e-5)


def test_delta_delta_i_by_hand():
    prefix = ID["<eot>"]
    frames = []
    for model, epoch, probs in (("base", 0, BASE), ("epoch-5", 5, TUNED)):
        sc = scoring.Scorer(Bigram(probs), Tok(), prefix, max_length=4096, share_context=False)
        frames.append(sc.pairs(PAIRS).assign(model=model, epoch=epoch))
    items, t1 = stats.delta_delta_i(pd.concat(frames, ignore_index=True), unit="nats")
    items = items.set_index("id")
    for p in PAIRS:
        dd = (hand_I(TUNED, p, "good") - hand_I(TUNED, p, "bad")) - (hand_I(BASE, p, "good") - hand_I(BASE, p, "bad"))
        assert items.loc[p["id"], "ddI"] == pytest.approx(dd, abs=1e-5)
    # p1 written out: the <eot> rows are equal in both tables, so only the row after " cat" matters. BASE puts
    # 0.2 and 0.3 extra on " sat" and " ran" and spreads the other 0.5 over 9 tokens; TUNED 0.5 and 0.1, and 0.4.
    c_sat_b, c_ran_b = 0.5 / 9 + 0.2, 0.5 / 9 + 0.3
    c_sat_t, c_ran_t = 0.4 / 9 + 0.5, 0.4 / 9 + 0.1
    assert items.loc["p1", "ddI"] == pytest.approx(math.log(c_sat_t / c_ran_t) - math.log(c_sat_b / c_ran_b), abs=1e-5)
    lit = t1[t1.domain == "literary"].iloc[0]
    assert lit.delta == pytest.approx(items[items.domain == "literary"].ddI.mean())
    bits = stats.delta_delta_i(pd.concat(frames, ignore_index=True), unit="bits")[0].set_index("id")
    assert bits.loc["p1", "ddI"] == pytest.approx(items.loc["p1", "ddI"] / math.log(2), abs=1e-6)


def test_continuation_per_token_logp_by_hand():
    rows = [{"id": "c1", "domain": "literary", "context": "The cat", "passage": "sat on the mat."}]
    got = scoring.Scorer(Bigram(BASE), Tok(), ID["<eot>"], max_length=4096).continuations(rows).iloc[0]
    x = split(" sat on the mat.")
    assert got.n_tokens == 5 and got.logp == pytest.approx(logp(BASE, " cat", x), abs=1e-5)
    assert got.logp_per_token == pytest.approx(logp(BASE, " cat", x) / 5, abs=1e-6)


def test_figure2_distribution_is_not_degenerate():
    # 30-token candidates whose summed log-probs differ by 60 nats: 2 nats per token
    ps = pd.DataFrame([{"model": m, "epoch": e, "id": "i", "domain": "literary", "n_tokens_good": 30, "n_tokens_bad": 30,
                        "logp_cond_good": -60.0 - s, "logp_cond_bad": -120.0 + s, "logp_uncond_good": -90.0, "logp_uncond_bad": -95.0}
                       for m, e, s in (("base", 0, 0.0), ("epoch-5", 5, -15.0))])
    d = figures.candidate_distributions(ps, "i", 5).set_index(["model", "context"])
    base_with = d.loc[("base", "with")]
    assert base_with["P(good)"] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-12)  # 0.881, not 1.0
    assert base_with["log-odds per token (nats)"] == pytest.approx(2.0) and base_with["log-odds summed (nats)"] == pytest.approx(60.0)
    p = 1 / (1 + math.exp(-2.0))
    assert base_with["entropy bits"] == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)), abs=1e-12)
    tuned = d.loc[("epoch 5", "with")]
    assert tuned["P(good)"] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-12) and tuned["entropy bits"] < base_with["entropy bits"]
    assert d.loc[("base", "without"), "P(good)"] == pytest.approx(1 / (1 + math.exp(-5 / 30)), abs=1e-12)
    assert (d[["P(good)", "P(bad)"]] > 0.01).all().all()
    summ = figures.entropy_summary(ps, 5).set_index("model")
    assert summ.loc["base", "mean H(X|Y) bits"] == pytest.approx(base_with["entropy bits"])

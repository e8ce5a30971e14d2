"""Scoring math: boundary handling, prefix token, batching, antisymmetry, truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqa_utils.method import scoring
from cqa_utils.method.models import prefix_token_id


def naive_logprobs(model, ids: list[int], n_cont: int) -> np.ndarray:
    """Reference: full forward over the whole sequence, full-vocabulary log-softmax, one sequence."""
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits.double(), -1)[0]
    start = len(ids) - n_cont
    return np.array([lp[start - 1 + k, ids[start + k]].item() for k in range(n_cont)])


def test_split_boundary_moves_whitespace():
    assert scoring.split_boundary("Answer: ", "Paris") == ("Answer:", " Paris")
    assert scoring.split_boundary("The end.", "Then") == ("The end.", " Then")
    assert scoring.split_boundary("line\n\n", "next") == ("line", "\n\nnext")
    assert scoring.split_boundary("", "alone") == ("", "alone")


def test_same_continuation_ids_in_both_runs(smoke):
    _, tok, model, pid = smoke
    sc = scoring.Scorer(model, tok)
    c = sc.encode(scoring.Request("A long context here.", "the continuation"))
    u = sc.encode(scoring.Request("A long context here.", "the continuation", conditional=False))
    assert sc.prefix_id == pid and c.cont == u.cont and u.ctx == [pid] and c.ctx[0] == pid
    assert c.cont == tok(" the continuation", add_special_tokens=False).input_ids


def test_first_continuation_token_scored_with_empty_context(smoke):
    _, tok, model, pid = smoke
    s = scoring.Scorer(model, tok).loglikelihood([scoring.Request("", "Nessa walked home.")])[0]
    ids = tok("Nessa walked home.", add_special_tokens=False).input_ids
    assert s.n == len(ids)  # every token of x is scored, the first one after the prefix token
    ref = naive_logprobs(model, [pid] + ids, len(ids))
    np.testing.assert_allclose(s.logprobs, ref, atol=1e-4)


REQS = [("The harbour was quiet that night, and", "the boats knocked together."),
        ("", "A sentence scored on its own."),
        ("Short.", "x"),
        ("A much longer context " * 12, "with a short end."),
        ("Trailing space ", "here"),
        ("The harbour was quiet that night, and", "the gulls slept.")]


@pytest.mark.parametrize("share_context", [True, False])
@pytest.mark.parametrize("normalisation", scoring.NORMALISATIONS)
def test_batched_equals_naive_one_at_a_time(smoke, share_context, normalisation):
    """Every scorer option against a plain float64 reference on each request alone, conditional and not."""
    _, tok, model, pid = smoke
    sc = scoring.Scorer(model, tok, batch_tokens=40, share_context=share_context, normalisation=normalisation)
    reqs = [scoring.Request(c, x, cond) for c, x in REQS for cond in (True, False)]
    for r, b in zip(reqs, sc.loglikelihood(reqs)):
        e = sc.encode(r)
        assert (b.n, b.n_ctx) == (len(e.cont), len(e.ctx))
        np.testing.assert_allclose(b.logprobs, naive_logprobs(model, e.ctx + e.cont, len(e.cont)), atol=1e-4)


# log P of REQS[0], REQS[1], REQS[4], REQS[5] and of one pair, printed by the scoring functions this module
# replaced (commit c55fa83: scoring.loglikelihood and scoring.score_pairs) on the smoke model. The smoke model's
# tokenizer is trained on the files under data/standin, so these were recomputed with the old code when the
# benchmark v2 and calibration files arrived (c55fa83's code, today's data/standin, a fresh smoke model).
OLD_TOTALS = [(-89.977296, 13, 12), (-70.10827, 10, 1), (-13.706684, 2, 7), (-55.143126, 8, 12)]
OLD_PAIR = {"logp_cond_good": -70.104347, "logp_uncond_good": -69.72963, "logp_cond_bad": -75.434442,
            "logp_uncond_bad": -75.063919, "dI": -0.004194}
PAIR = {"id": "p0", "domain": "literary", "context": "Nessa opened the door and looked at the rain.",
        "good": "It fell softly on the step.", "bad": "It was a lovely day, she said."}


def test_scorer_reproduces_the_old_functions(smoke):
    _, tok, model, _ = smoke
    sc = scoring.Scorer(model, tok)
    got = sc.loglikelihood([scoring.Request(*REQS[i]) for i in (0, 1, 4, 5)])
    for (total, n, n_ctx), r in zip(OLD_TOTALS, got):
        assert (r.total, r.n, r.n_ctx) == (pytest.approx(total, abs=1e-4), n, n_ctx)
    p = sc.pairs([PAIR]).iloc[0]
    for k, v in OLD_PAIR.items():
        assert p[k] == pytest.approx(v, abs=1e-4), k


def test_request_order_is_defined_once():
    rows = [dict(PAIR, id="a"), dict(PAIR, id="b", context="Other.", passage="P.")]
    R = scoring.Request
    assert scoring.pair_requests(rows[:1]) == [R(PAIR["context"], PAIR["good"]), R(PAIR["context"], PAIR["good"], False),
                                               R(PAIR["context"], PAIR["bad"]), R(PAIR["context"], PAIR["bad"], False)]
    assert scoring.continuation_requests(rows[1:]) == [R("Other.", "P.")]


def test_log_softmax_option_differs_only_by_rounding(smoke):
    _, tok, model, _ = smoke
    reqs = [scoring.Request(c, x) for c, x in REQS]
    a = scoring.Scorer(model, tok).loglikelihood(reqs)
    b = scoring.Scorer(model, tok, normalisation="log_softmax").loglikelihood(reqs)
    np.testing.assert_allclose([r.total for r in a], [r.total for r in b], atol=1e-4)
    with pytest.raises(ValueError, match="normalisation"):
        scoring.Scorer(model, tok, normalisation="softmax")


def test_batches_respect_token_budget():
    lengths = [50, 10, 40, 30, 20]
    batches = list(scoring._batches(lengths, 80))
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 80 or len(b) == 1


def test_pair_information_is_antisymmetric(smoke):
    _, tok, model, pid = smoke
    row = {"id": "p", "domain": "literary", "context": "Nessa opened the door.", "good": "Rain came in.", "bad": "The sun spoke."}
    swapped = dict(row, good=row["bad"], bad=row["good"])
    sc = scoring.Scorer(model, tok)
    a, b = sc.pairs([row]).iloc[0], sc.pairs([swapped]).iloc[0]
    assert a.dI == pytest.approx(-b.dI, abs=1e-9)
    assert a.I_good == pytest.approx(a.logp_cond_good - a.logp_uncond_good)


def test_context_cut_from_left_never_continuation(smoke):
    _, tok, model, pid = smoke
    cont_ids = tok(" end of it", add_special_tokens=False).input_ids
    sc = scoring.Scorer(model, tok, max_length=20)
    e = sc.encode(scoring.Request("word " * 100, "end of it"))
    assert e.cont == cont_ids and len(e.ctx) + len(e.cont) - 1 == 20 and e.ctx[0] == pid and e.truncated > 0
    r = sc.loglikelihood([scoring.Request("word " * 100, "end of it")])[0]
    assert r.ctx_truncated == e.truncated and r.n_ctx == len(e.ctx)
    with pytest.raises(ValueError, match="does not fit"):
        sc.encode(scoring.Request("ctx", "word " * 50))


def test_prefix_token_choice(smoke):
    _, tok, _, _ = smoke
    assert prefix_token_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>")

    class BosTok:  # a Llama-3 style tokenizer that adds BOS itself
        bos_token_id, unk_token_id, unk_token = 7, 1, "<unk>"

        def __call__(self, s, add_special_tokens=True):
            return type("E", (), {"input_ids": ([7] if add_special_tokens else []) + [42]})()

    assert prefix_token_id(BosTok()) == 7


def test_shared_context_equals_separate_scoring(smoke):
    _, tok, model, pid = smoke
    rows = [{"id": f"p{i}", "domain": "literary", "context": ctx, "good": g, "bad": b} for i, (ctx, g, b) in enumerate([
        ("Nessa opened the door and looked at the rain.", "It fell softly on the step.", "It was a lovely day for a picnic, she said."),
        ("Short.", "x", "A much longer option than the other one here."),
        ("Trailing space ", "one", "two"),
    ])]
    a = scoring.Scorer(model, tok).pairs(rows)
    b = scoring.Scorer(model, tok, share_context=False).pairs(rows)
    cols = ["logp_cond_good", "logp_cond_bad", "logp_uncond_good", "logp_uncond_bad", "n_tokens_good", "n_tokens_bad"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)


def test_shared_context_batches_equal_one_at_a_time(smoke):
    """Continuations of one context, in several padded batches after its cache, score as each one alone."""
    _, tok, model, pid = smoke
    ctx = [pid] + tok("Nessa opened the door and looked at the rain.", add_special_tokens=False)["input_ids"]
    conts = [tok(t, add_special_tokens=False)["input_ids"] for t in
             (" It fell softly on the step.", " x", " A much longer option than the other one, by some way.", " one")]
    conts.append(conts[1][:1])  # a one-token continuation: predicted from the context alone
    items = [scoring.Encoded(ctx, c, True, 0) for c in conts]
    shared = scoring.Scorer(model, tok, batch_tokens=12)._loglikelihood_tokens(items)  # forces several batches
    alone = [scoring.Scorer(model, tok)._loglikelihood_tokens([e])[0] for e in items]
    for a, b, e in zip(shared, alone, items):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
        np.testing.assert_allclose(a.logprobs, naive_logprobs(model, e.ctx + e.cont, len(e.cont)), atol=1e-4)

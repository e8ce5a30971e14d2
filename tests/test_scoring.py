"""Scoring math: boundary handling, prefix token, batching, antisymmetry, truncation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cqa_utils import scoring
from cqa_utils.models import prefix_token_id


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
    _, tok, _, pid = smoke
    c = scoring.encode(tok, "A long context here.", "the continuation", pid, 4096)
    u = scoring.encode_unconditional(tok, "A long context here.", "the continuation", pid, 4096)
    assert c.cont == u.cont and u.ctx == [pid] and c.ctx[0] == pid


def test_first_continuation_token_scored_with_empty_context(smoke):
    _, tok, model, pid = smoke
    s = scoring.loglikelihood(model, tok, [("", "Nessa walked home.")], pid)[0]
    ids = tok("Nessa walked home.", add_special_tokens=False).input_ids
    assert s.n == len(ids)  # every token of x is scored, the first one after the prefix token
    ref = naive_logprobs(model, [pid] + ids, len(ids))
    np.testing.assert_allclose(s.logprobs, ref, atol=1e-4)


def test_batched_equals_unbatched(smoke):
    _, tok, model, pid = smoke
    reqs = [("The harbour was quiet that night, and", "the boats knocked together."),
            ("", "A sentence scored on its own."),
            ("Short.", "x"),
            ("A much longer context " * 12, "with a short end."),
            ("Trailing space ", "here")]
    batched = scoring.loglikelihood(model, tok, reqs, pid, max_tokens=10_000)
    for r, b in zip(reqs, batched):
        one = scoring.loglikelihood(model, tok, [r], pid, max_tokens=10_000)[0]
        np.testing.assert_allclose(b.logprobs, one.logprobs, atol=1e-4)
        e = scoring.encode(tok, *r, pid, 4096)
        np.testing.assert_allclose(b.logprobs, naive_logprobs(model, e.ctx + e.cont, len(e.cont)), atol=1e-4)


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
    a = scoring.score_pairs(model, tok, [row], pid).iloc[0]
    b = scoring.score_pairs(model, tok, [swapped], pid).iloc[0]
    assert a.dI == pytest.approx(-b.dI, abs=1e-9)
    assert a.I_good == pytest.approx(a.logp_cond_good - a.logp_uncond_good)


def test_context_cut_from_left_never_continuation(smoke):
    _, tok, _, pid = smoke
    cont_ids = tok(" end of it", add_special_tokens=False).input_ids
    e = scoring.encode(tok, "word " * 100, "end of it", pid, max_len=20)
    assert e.cont == cont_ids and len(e.ctx) + len(e.cont) - 1 == 20 and e.ctx[0] == pid and e.truncated > 0
    with pytest.raises(ValueError, match="does not fit"):
        scoring.encode(tok, "ctx", "word " * 50, pid, max_len=10)


def test_prefix_token_choice(smoke):
    _, tok, _, _ = smoke
    assert prefix_token_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>")

    class BosTok:  # a Llama-3 style tokenizer that adds BOS itself
        bos_token_id, unk_token_id, unk_token = 7, 1, "<unk>"

        def __call__(self, s, add_special_tokens=True):
            return type("E", (), {"input_ids": ([7] if add_special_tokens else []) + [42]})()

    assert prefix_token_id(BosTok()) == 7


def test_units():
    assert scoring.to_bits(np.log(2.0)) == pytest.approx(1.0)


def test_shared_context_equals_separate_scoring(smoke):
    _, tok, model, pid = smoke
    rows = [{"id": f"p{i}", "domain": "literary", "context": ctx, "good": g, "bad": b} for i, (ctx, g, b) in enumerate([
        ("Nessa opened the door and looked at the rain.", "It fell softly on the step.", "It was a lovely day for a picnic, she said."),
        ("Short.", "x", "A much longer option than the other one here."),
        ("Trailing space ", "one", "two"),
    ])]
    a = scoring.score_pairs(model, tok, rows, pid, share_context=True)
    b = scoring.score_pairs(model, tok, rows, pid, share_context=False)
    cols = ["logp_cond_good", "logp_cond_bad", "logp_uncond_good", "logp_uncond_bad", "n_tokens_good", "n_tokens_bad"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)


def test_shared_context_batches_equal_one_at_a_time(smoke):
    """Continuations of one context, in several padded batches after its cache, score as each one alone."""
    _, tok, model, pid = smoke
    ctx = [pid] + tok("Nessa opened the door and looked at the rain.", add_special_tokens=False)["input_ids"]
    conts = [tok(t, add_special_tokens=False)["input_ids"] for t in
             (" It fell softly on the step.", " x", " A much longer option than the other one, by some way.", " one")]
    conts.append(conts[1][:1])  # a one-token continuation: predicted from the context alone
    shared = scoring.score_shared_context(model, ctx, conts, max_tokens=12, pad_id=pid)  # forces several batches
    alone = [scoring.score_shared_context(model, ctx, [c])[0] for c in conts]
    for a, b in zip(shared, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    full = scoring.score_encoded(model, [scoring.Encoded(ctx, c, True, 0) for c in conts], pad_id=pid)
    for a, f in zip(shared, full):
        np.testing.assert_allclose(a, f.logprobs, atol=1e-4)

"""Scoring: log P(continuation | context) under a causal LM, one request type and one scorer.

The API follows lm-evaluation-harness's ``loglikelihood(context, continuation)``: every score is a
:class:`Request` (context, continuation, conditional) handed to :meth:`Scorer.loglikelihood`, which returns
one :class:`Result` (per-token log-probs in nats, and flags) per request, in request order. A pair costs four
requests and a passage one; :func:`pair_requests` and :func:`continuation_requests` fix that order once.

**Prefix token.** Every scored sequence starts with one prefix token ``P``, the same token in the conditional
and the unconditional run, so the first continuation token has a position that predicts it. Without it that
token would go unscored, and the choice of ``P`` moves log P(x) by several nats on a ~60-token passage, so it
is fixed per model (:func:`cqa_utils.method.models.prefix_token_id`): the tokenizer's BOS when the tokenizer adds one
itself (Llama-3 style; the pieces are then encoded without special tokens so BOS appears once); otherwise
``<|endoftext|>``, the document separator the model saw between documents in pretraining (Qwen2.5 has no BOS;
SmolLM2-Instruct names ``<|im_start|>`` as its BOS, a chat marker its tokenizer never adds). A chat marker or
an end-of-turn token is never used.

**The context/continuation boundary.** As in lm-evaluation-harness, trailing whitespace of the context moves to
the front of the continuation (``"Answer: " + "Paris"`` is scored as ``"Answer:" + " Paris"``); a context
that ends without whitespace is joined to the continuation by one space. Context ``y`` and continuation ``x``
are then encoded *separately* (no special tokens) and concatenated: log P(x|y) scores x in ``[P] + y + x``
and log P(x) scores the very same x ids in ``[P] + x``, so both terms of I = log P(x|y) − log P(x) cover
identical tokens. lm-evaluation-harness instead encodes ``y + x`` jointly and slices x off; when a token spans
the join that gives x different ids in the two runs, or none at all. Here a request whose joint encoding
differs from the separate one is kept and flagged (``boundary_ok=False``).

**The window.** The model is fed ``[P] + y + x[:-1]`` (the last token is only predicted). When that exceeds
the model's window (``max_position_embeddings``), y is cut from the left, P kept, and ``ctx_truncated``
counts the cut tokens; x is never cut, and an x that does not fit alone is an error.

**Speed.** Requests whose context ids are identical share one context pass: the context runs once, its
key/value cache is repeated along a batch of its continuations and cropped back afterwards (a pair's two
conditional requests share it). The rest go in length-sorted, right-padded batches of at most
``batch_tokens`` fed tokens, fed *without* an attention mask: in a causal LM a real token attends only to
positions before it, the padding sits after every real token, and positions count from 0 in every row either
way, so each real position's output equals that of the unpadded sequence; the padded positions' outputs are
never read (their rows are found from the lengths, never by comparing ids with a pad id, which here is the
prefix token itself). The LM head runs only on rows that predict a continuation token, and log P(t) is
logit_t − logsumexp(logits) in fp32, which stays within ~1e-5 nats per token of a float64 normalisation of
the same logits. A full-vocabulary fp32 log-softmax (lm-evaluation-harness) is off by up to ~1e-5 nats per
token, always in the same direction (~1.5e-3 over a 170-token passage); ``normalisation="log_softmax"``
reproduces it to compare with that tool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from cqa_utils.method.models import load_model, load_tokenizer, prefix_token_id

LN2 = math.log(2.0)
NORMALISATIONS = ("logsumexp", "log_softmax")
PAIR_OPTIONS = ("good", "bad")


@dataclass(frozen=True)
class Request:
    """One scoring request: log P(continuation | context), or with ``conditional=False`` log P(continuation)
    scored after the prefix token alone (the continuation ids exactly as they are after the context)."""

    context: str
    continuation: str
    conditional: bool = True


@dataclass(frozen=True, eq=False)
class Result:
    """What one request scored: per-token natural-log probabilities of the continuation, and flags."""

    logprobs: np.ndarray
    n_ctx: int  # tokens before the continuation, prefix token included
    boundary_ok: bool  # separate and joint encodings of context + continuation agree
    ctx_truncated: int = 0  # context tokens cut from the left to fit the window

    @property
    def total(self) -> float:
        """log P summed over the continuation's tokens (nats)."""
        return float(self.logprobs.sum())

    @property
    def n(self) -> int:
        """Number of continuation tokens scored."""
        return int(self.logprobs.size)


@dataclass(frozen=True)
class Encoded:
    """Token ids of one request: prefix + (possibly cut) context, and the continuation."""

    ctx: list[int]
    cont: list[int]
    boundary_ok: bool
    truncated: int = 0  # context tokens cut from the left


def split_boundary(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation; join with one space otherwise."""
    if context == "":
        return "", continuation
    stripped = context.rstrip()
    ws = context[len(stripped):]
    return stripped, (ws if ws else " ") + continuation.lstrip()


def pair_requests(rows: Sequence[dict[str, Any]]) -> list[Request]:
    """The four requests of each pair, in the one order used everywhere: good|y, good, bad|y, bad."""
    return [Request(r["context"], r[opt], cond) for r in rows for opt in PAIR_OPTIONS for cond in (True, False)]


def continuation_requests(rows: Sequence[dict[str, Any]]) -> list[Request]:
    """One request per passage: log P(passage | context)."""
    return [Request(r["context"], r["passage"]) for r in rows]


def pair_table(rows: Sequence[dict[str, Any]], results: Sequence[Result]) -> pd.DataFrame:
    """Per pair (results in :func:`pair_requests` order): log P(x|y), log P(x), token counts for good and bad,
    I = log P(x|y) − log P(x) and ΔI = I_good − I_bad (nats)."""
    recs = []
    for k, r in enumerate(rows):
        gc, gu, bc, bu = results[4 * k: 4 * k + 4]
        rec: dict[str, Any] = {"id": r["id"], "domain": r["domain"]}
        for name, c, u in (("good", gc, gu), ("bad", bc, bu)):
            rec |= {f"logp_cond_{name}": c.total, f"logp_uncond_{name}": u.total, f"n_tokens_{name}": c.n,
                    f"I_{name}": c.total - u.total}
        rec |= {"dI": rec["I_good"] - rec["I_bad"], "n_ctx_tokens": gc.n_ctx,
                "boundary_ok": gc.boundary_ok and bc.boundary_ok, "ctx_truncated": max(gc.ctx_truncated, bc.ctx_truncated)}
        recs.append(rec)
    return pd.DataFrame(recs)


def continuation_table(rows: Sequence[dict[str, Any]], results: Sequence[Result]) -> pd.DataFrame:
    """Per passage (results in :func:`continuation_requests` order): log P(passage | context), summed and per token."""
    return pd.DataFrame([{"id": r["id"], "domain": r["domain"], "logp": s.total, "n_tokens": s.n,
                          "logp_per_token": s.total / s.n, "boundary_ok": s.boundary_ok,
                          "ctx_truncated": s.ctx_truncated} for r, s in zip(rows, results)])


def model_window(model: Any) -> int:
    """The longest sequence the model accepts (its config's ``max_position_embeddings``; 2048 if unset)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return int(getattr(m.config, "max_position_embeddings", 2048))


@dataclass(frozen=True, eq=False)
class Scorer:
    """Scores :class:`Request` lists with one model: owns the model, its tokenizer, the prefix token and the
    batching window. Immutable; :meth:`with_model` and :meth:`with_options` give variants.

    ``prefix_id``: None picks the model's prefix token (module docstring). ``batch_tokens``: most fed tokens
    per padded batch. ``max_length``: the model window (None: from the model's config). ``normalisation``:
    "logsumexp" (default) or "log_softmax" (fp32, as lm-evaluation-harness). ``share_context``: run each
    repeated context once.
    """

    model: Any
    tokenizer: Any
    prefix_id: int | None = None
    batch_tokens: int = 4096
    max_length: int | None = None
    normalisation: str = "logsumexp"
    share_context: bool = True

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, found {self.normalisation!r}")
        if self.prefix_id is None:
            object.__setattr__(self, "prefix_id", prefix_token_id(self.tokenizer))
        if self.max_length is None:
            object.__setattr__(self, "max_length", model_window(self.model))

    @classmethod
    def for_profile(cls, profile: Any, model: Any = None, tokenizer: Any = None, **options: Any) -> Scorer:
        """A scorer for a run profile: its model and tokenizer (loaded unless given) and its batch window."""
        tok = tokenizer if tokenizer is not None else load_tokenizer(profile)
        return cls(model if model is not None else load_model(profile), tok,
                   batch_tokens=options.pop("batch_tokens", profile.score_batch_tokens), **options)

    def with_model(self, model: Any) -> Scorer:
        """The same scorer on another model object (e.g. the base with an adapter attached)."""
        return replace(self, model=model)

    def with_options(self, **options: Any) -> Scorer:
        """The same scorer with other options (``normalisation``, ``share_context``, ``batch_tokens``)."""
        return replace(self, **options)

    def encode(self, request: Request) -> Encoded:
        """Token ids of one request (boundary, prefix token and window as in the module docstring)."""
        y, x = split_boundary(request.context, request.continuation)
        y_ids, x_ids = self._ids(y), self._ids(x)
        if not x_ids:
            raise ValueError(f"empty continuation after tokenisation: {request.continuation[:60]!r}")
        boundary_ok = not y_ids or self._ids(y + x) == y_ids + x_ids
        if not request.conditional:
            return Encoded([self.prefix_id], x_ids, boundary_ok, 0)
        room = self.max_length - len(x_ids)  # the model is fed [P] + y + x[:-1]: at most max_length tokens
        if room < 0:
            raise ValueError(f"continuation of {len(x_ids)} tokens does not fit the model window of {self.max_length}")
        cut = max(0, len(y_ids) - room)
        return Encoded([self.prefix_id] + y_ids[cut:], x_ids, boundary_ok, cut)

    def loglikelihood(self, requests: Sequence[Request]) -> list[Result]:
        """One :class:`Result` per request, in request order."""
        return self._loglikelihood_tokens([self.encode(r) for r in requests])

    def _loglikelihood_tokens(self, items: Sequence[Encoded]) -> list[Result]:
        """Score encoded requests: shared contexts once (with ``share_context``), the rest in batches."""
        if not self.share_context:
            return _score_batched(self.model, items, self.batch_tokens, self.prefix_id, self.normalisation)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, e in enumerate(items):
            groups.setdefault(tuple(e.ctx), []).append(i)
        out: list[Result | None] = [None] * len(items)
        plain = [i for ctx, g in groups.items() if len(g) == 1 or len(ctx) == 1 for i in g]  # nothing to share
        for i, s in zip(plain, _score_batched(self.model, [items[i] for i in plain], self.batch_tokens, self.prefix_id,
                                               self.normalisation)):
            out[i] = s
        for ctx, g in groups.items():
            if len(g) > 1 and len(ctx) > 1:
                lps = _score_shared_context(self.model, list(ctx), [items[i].cont for i in g], self.batch_tokens,
                                            self.prefix_id, self.normalisation)
                for i, lp in zip(g, lps):
                    out[i] = Result(lp, len(items[i].ctx), items[i].boundary_ok, items[i].truncated)
        return out  # type: ignore[return-value]

    def pairs(self, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
        """:func:`pair_table` of the rows' :func:`pair_requests`."""
        return pair_table(rows, self.loglikelihood(pair_requests(rows)))

    def continuations(self, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
        """:func:`continuation_table` of the rows' :func:`continuation_requests`."""
        return continuation_table(rows, self.loglikelihood(continuation_requests(rows)))

    def _ids(self, s: str) -> list[int]:
        return self.tokenizer(s, add_special_tokens=False).input_ids if s else []


# ------------------------------------------------------------------ the forward passes (private)

def _parts(model: Any) -> tuple[Any, Any]:
    """(decoder stack, LM head) of a causal LM, also through a peft wrapper (LoRA layers stay active)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return m.get_decoder(), m.get_output_embeddings()


def _token_logprobs(head: Any, rows: torch.Tensor, targets: Sequence[int], normalisation: str) -> np.ndarray:
    """log P(target) at each hidden row: the LM head on these rows only, normalised in fp32."""
    logits = head(rows).float()
    tgt = torch.tensor(list(targets), device=rows.device)[:, None]
    if normalisation == "log_softmax":
        return torch.log_softmax(logits, -1).gather(1, tgt)[:, 0].double().cpu().numpy()
    return (logits.gather(1, tgt)[:, 0] - torch.logsumexp(logits, -1)).double().cpu().numpy()


def _right_padded(seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Token id rows padded on the right with ``pad_id`` to the longest one."""
    ids = torch.full((len(seqs), max(len(q) for q in seqs)), pad_id, dtype=torch.long)
    for r, q in enumerate(seqs):
        ids[r, : len(q)] = torch.tensor(q)
    return ids


def _batches(lengths: Sequence[int], max_tokens: int) -> Iterable[list[int]]:
    """Indices grouped longest-first so each padded batch holds at most ``max_tokens`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and lengths[batch[0]] * (len(batch) + 1) > max_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.inference_mode()
def _score_batched(model: Any, items: Sequence[Encoded], max_tokens: int, pad_id: int, normalisation: str) -> list[Result]:
    """Per-token log-probs of each item's continuation in length-sorted right-padded batches; input order."""
    decoder, head = _parts(model)
    device = next(model.parameters()).device
    lengths = [len(e.ctx) + len(e.cont) - 1 for e in items]  # the last token is predicted, never fed
    out: list[Result | None] = [None] * len(items)
    for idx in _batches(lengths, max_tokens):
        ids = _right_padded([(items[i].ctx + items[i].cont)[:-1] for i in idx], pad_id)
        keep = torch.zeros(ids.shape, dtype=torch.bool)
        targets = []
        for r, i in enumerate(idx):
            e = items[i]
            keep[r, len(e.ctx) - 1: lengths[i]] = True  # positions whose next token is a continuation token
            targets.extend(e.cont)
        # no attention mask: right padding is invisible to the real (earlier) positions of a causal LM
        hidden = decoder(input_ids=ids.to(device), use_cache=False).last_hidden_state
        lp = _token_logprobs(head, hidden[keep.to(device)], targets, normalisation)
        pos = 0
        for i in idx:
            e = items[i]
            out[i] = Result(lp[pos: pos + len(e.cont)], len(e.ctx), e.boundary_ok, e.truncated)
            pos += len(e.cont)
    return out  # type: ignore[return-value]


@torch.inference_mode()
def _score_shared_context(model: Any, ctx: list[int], conts: Sequence[list[int]], max_tokens: int, pad_id: int,
                          normalisation: str) -> list[np.ndarray]:
    """Per-token log-probs of several continuations of one context, running the context only once.

    The context's key/value cache is kept. The continuations follow it in length-sorted, right-padded
    batches of at most ``max_tokens`` fed tokens: the cache is repeated along the batch, the batch runs after
    it without a mask (its padding is invisible to the real positions before it), then the cache is cropped
    back to the context and cut back to one row (a cache grows in place: reused uncropped it would be wrong).
    """
    decoder, head = _parts(model)
    device = next(model.parameters()).device
    out = decoder(input_ids=torch.tensor([ctx], device=device), use_cache=True)
    first = out.last_hidden_state[0, -1:]  # predicts every continuation's first token
    cache = out.past_key_values
    res: list[np.ndarray | None] = [None] * len(conts)
    for i in [i for i, c in enumerate(conts) if len(c) == 1]:
        res[i] = _token_logprobs(head, first, conts[i], normalisation)
    rest = [i for i in range(len(conts)) if len(conts[i]) > 1]
    for idx in _batches([len(conts[i]) - 1 for i in rest], max_tokens):
        idx = [rest[k] for k in idx]
        ids = _right_padded([conts[i][:-1] for i in idx], pad_id)
        cache.batch_repeat_interleave(len(idx))
        h = decoder(input_ids=ids.to(device), past_key_values=cache, use_cache=True).last_hidden_state
        cache.crop(-ids.shape[1])  # back to the context alone, one row
        cache.batch_select_indices(torch.tensor([0], device=device))
        rows = torch.cat([torch.cat([first, h[r, : len(conts[i]) - 1]], 0) for r, i in enumerate(idx)], 0)
        lp = _token_logprobs(head, rows, [t for i in idx for t in conts[i]], normalisation)
        pos = 0
        for i in idx:
            res[i] = lp[pos: pos + len(conts[i])]
            pos += len(conts[i])
    return res  # type: ignore[return-value]

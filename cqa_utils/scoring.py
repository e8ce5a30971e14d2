"""One scoring entry point: per-token log P(continuation | context) under a causal LM.

Tokenisation (shared/DESIGN.md "Metrics", shared/notes/scoring.md):

* one prefix token ``P`` per model (see :func:`cqa_utils.models.prefix_token_id`);
* trailing whitespace of the context moves to the front of the continuation, as in
  lm-evaluation-harness; if the context ends without whitespace the two are joined by one space;
* context and continuation are encoded separately without special tokens and concatenated, so
  ``log P(x|y)`` scores x in ``[P] + y + x`` and ``log P(x)`` scores the *same* x ids in ``[P] + x``;
  a request whose joint encoding differs from the separate one is flagged (``boundary_ok``);
* if the fed sequence ``[P] + y + x[:-1]`` exceeds the window, y is cut from the left (P kept), never x.

Speed (bench/README.md has the measurements). Requests that share their context ids are scored with the
context run once (its key/value cache reused for each continuation). The rest go in length-sorted,
right-padded batches fed *without* an attention mask: in a causal LM a real token never attends to the
padding after it and positions count from 0 either way, so the real positions' outputs are those of the
unpadded sequence (as in lm-evaluation-harness), and the explicit-mask attention path is avoided. The LM head
runs only on rows that predict a continuation token, and log P(t) = logit_t - logsumexp(logits) in fp32
(no full-vocabulary log-softmax is written).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

LN2 = math.log(2.0)


@dataclass
class Encoded:
    """Token ids of one request: prefix + context (possibly cut) and the continuation."""

    ctx: list[int]
    cont: list[int]
    boundary_ok: bool
    truncated: int = 0  # context tokens cut from the left


@dataclass
class Scored:
    """Per-token natural-log probabilities of one continuation."""

    logprobs: np.ndarray
    n_ctx: int
    boundary_ok: bool
    truncated: int

    @property
    def total(self) -> float:
        return float(self.logprobs.sum())

    @property
    def n(self) -> int:
        return int(self.logprobs.size)


def split_boundary(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation; join with one space otherwise."""
    if context == "":
        return "", continuation
    stripped = context.rstrip()
    ws = context[len(stripped):]
    return stripped, (ws if ws else " ") + continuation.lstrip()


def encode(tokenizer: Any, context: str, continuation: str, prefix_id: int, max_len: int) -> Encoded:
    """Token ids for one (context, continuation) request; see the module docstring."""
    y, x = split_boundary(context, continuation)
    enc = lambda s: tokenizer(s, add_special_tokens=False).input_ids if s else []  # noqa: E731
    y_ids, x_ids = enc(y), enc(x)
    if not x_ids:
        raise ValueError(f"empty continuation after tokenisation: {continuation[:60]!r}")
    boundary_ok = not y_ids or enc(y + x) == y_ids + x_ids
    room = max_len - len(x_ids)  # the model is fed [P] + y + x[:-1]: at most max_len tokens
    if room < 0:
        raise ValueError(f"continuation of {len(x_ids)} tokens does not fit the model window of {max_len}")
    cut = max(0, len(y_ids) - room)
    return Encoded([prefix_id] + y_ids[cut:], x_ids, boundary_ok, cut)


def encode_unconditional(tokenizer: Any, context: str, continuation: str, prefix_id: int, max_len: int) -> Encoded:
    """The continuation ids exactly as scored after ``context``, now after the prefix token alone."""
    e = encode(tokenizer, context, continuation, prefix_id, max_len)
    return Encoded([prefix_id], e.cont, e.boundary_ok, 0)


def _parts(model: Any) -> tuple[Any, Any]:
    """(decoder stack, LM head) of a causal LM, also through a peft wrapper (LoRA layers stay active)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return m.get_decoder(), m.get_output_embeddings()


NORMALISATIONS = ("logsumexp", "log_softmax")
_normalisation = "logsumexp"


@contextmanager
def normalisation(kind: str) -> Iterator[None]:
    """Temporarily normalise as ``kind``: "logsumexp" (default) or "log_softmax" (fp32, as lm-evaluation-harness).

    Both are fp32. On SmolLM2 the fp32 log-softmax is off by up to ~1e-5 nats per token in one direction (its
    sum over 49k exponentials), ~1.5e-3 over a 172-token passage; logit - logsumexp stays within ~1e-5 of a
    float64 normalisation of the same logits. The bench uses "log_softmax" to show lm-eval agreement exactly.
    """
    global _normalisation
    if kind not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, found {kind!r}")
    old, _normalisation = _normalisation, kind
    try:
        yield
    finally:
        _normalisation = old


def _token_logprobs(head: Any, rows: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """log P(target) at each hidden row: LM head on these rows only, then logit - logsumexp in fp32."""
    logits = head(rows).float()
    tgt = torch.tensor(list(targets), device=rows.device)[:, None]
    if _normalisation == "log_softmax":
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
def score_encoded(model: Any, items: Sequence[Encoded], max_tokens: int = 4096, pad_id: int = 0) -> list[Scored]:
    """Per-token log-probs of each item's continuation, batched; results in input order."""
    decoder, head = _parts(model)
    device = next(model.parameters()).device
    lengths = [len(e.ctx) + len(e.cont) - 1 for e in items]  # the last token is predicted, never fed
    out: list[Scored | None] = [None] * len(items)
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
        lp = _token_logprobs(head, hidden[keep.to(device)], targets)
        pos = 0
        for i in idx:
            e = items[i]
            n = len(e.cont)
            out[i] = Scored(lp[pos: pos + n], len(e.ctx), e.boundary_ok, e.truncated)
            pos += n
    return out  # type: ignore[return-value]


@torch.inference_mode()
def score_shared_context(model: Any, ctx: list[int], conts: Sequence[list[int]], max_tokens: int = 4096,
                         pad_id: int = 0) -> list[np.ndarray]:
    """Per-token log-probs of several continuations of one context, running the context only once.

    The context's key/value cache is kept. The continuations follow it in length-sorted, right-padded
    batches of at most ``max_tokens`` fed tokens: the cache is repeated along the batch, the batch runs
    after it without a mask (right padding is invisible to the real positions before it), and the cache
    is cropped and cut back to one row again (shared/notes/scoring.md §3-§4).
    """
    decoder, head = _parts(model)
    device = next(model.parameters()).device
    out = decoder(input_ids=torch.tensor([ctx], device=device), use_cache=True)
    first = out.last_hidden_state[0, -1:]  # predicts every continuation's first token
    cache = out.past_key_values
    res: list[np.ndarray | None] = [None] * len(conts)
    single = [i for i, c in enumerate(conts) if len(c) == 1]
    for i in single:
        res[i] = _token_logprobs(head, first, conts[i])
    rest = [i for i in range(len(conts)) if len(conts[i]) > 1]
    for idx in _batches([len(conts[i]) - 1 for i in rest], max_tokens):
        idx = [rest[k] for k in idx]
        ids = _right_padded([conts[i][:-1] for i in idx], pad_id)
        cache.batch_repeat_interleave(len(idx))
        h = decoder(input_ids=ids.to(device), past_key_values=cache, use_cache=True).last_hidden_state
        cache.crop(-ids.shape[1])  # back to the context alone, one row
        cache.batch_select_indices(torch.tensor([0], device=device))
        rows = torch.cat([torch.cat([first, h[r, : len(conts[i]) - 1]], 0) for r, i in enumerate(idx)], 0)
        lp = _token_logprobs(head, rows, [t for i in idx for t in conts[i]])
        pos = 0
        for i in idx:
            res[i] = lp[pos: pos + len(conts[i])]
            pos += len(conts[i])
    return res  # type: ignore[return-value]


def score_grouped(model: Any, items: Sequence[Encoded], max_tokens: int = 4096, pad_id: int = 0) -> list[Scored]:
    """Like :func:`score_encoded`, but items with identical context ids (longer than the prefix token alone)
    share one context pass; the rest, unconditional items included, go in ordinary batches."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(items):
        groups.setdefault(tuple(e.ctx), []).append(i)
    out: list[Scored | None] = [None] * len(items)
    plain = [i for ctx, g in groups.items() if len(g) == 1 or len(ctx) == 1 for i in g]  # nothing to share
    for i, s in zip(plain, score_encoded(model, [items[i] for i in plain], max_tokens, pad_id)):
        out[i] = s
    for ctx, g in groups.items():
        if len(g) > 1 and len(ctx) > 1:
            lps = score_shared_context(model, list(ctx), [items[i].cont for i in g], max_tokens, pad_id)
            for i, lp in zip(g, lps):
                e = items[i]
                out[i] = Scored(lp, len(e.ctx), e.boundary_ok, e.truncated)
    return out  # type: ignore[return-value]


def model_window(model: Any, tokenizer: Any) -> int:
    """The longest sequence the model accepts."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return int(getattr(m.config, "max_position_embeddings", 2048))


def loglikelihood(model: Any, tokenizer: Any, requests: Sequence[tuple[str, str]], prefix_id: int,
                  max_tokens: int = 4096, share_context: bool = True) -> list[Scored]:
    """Score (context, continuation) requests; an empty context scores after the prefix token alone.

    With ``share_context`` requests whose context ids are identical run that context once.
    """
    win = model_window(model, tokenizer)
    enc = [encode(tokenizer, c, x, prefix_id, win) for c, x in requests]
    if share_context:
        return score_grouped(model, enc, max_tokens, pad_id=prefix_id)
    return score_encoded(model, enc, max_tokens, pad_id=prefix_id)


# ------------------------------------------------------------------ benchmark-level scorers

def score_pairs(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], prefix_id: int,
                max_tokens: int = 4096, share_context: bool = True) -> "Any":
    """Per pair: log P(x|y), log P(x) and token counts for good and bad, and I = log P(x|y) - log P(x) (nats).

    With ``share_context`` requests with identical context ids run that context once (KV cache): the two
    options' conditional scores, and all unconditional scores (whose context is the prefix token alone).
    """
    import pandas as pd

    win = model_window(model, tokenizer)
    enc: list[Encoded] = []
    for r in rows:  # per pair: good|y, good, bad|y, bad
        for opt in ("good", "bad"):
            enc.append(encode(tokenizer, r["context"], r[opt], prefix_id, win))
            enc.append(encode_unconditional(tokenizer, r["context"], r[opt], prefix_id, win))
    sc = (score_grouped if share_context else score_encoded)(model, enc, max_tokens, pad_id=prefix_id)
    recs = []
    for k, r in enumerate(rows):
        gc, gu, bc, bu = sc[4 * k: 4 * k + 4]
        rec = {"id": r["id"], "domain": r["domain"]}
        for name, c, u in (("good", gc, gu), ("bad", bc, bu)):
            rec |= {f"logp_cond_{name}": c.total, f"logp_uncond_{name}": u.total, f"n_tokens_{name}": c.n,
                    f"I_{name}": c.total - u.total}
        rec |= {"dI": rec["I_good"] - rec["I_bad"], "n_ctx_tokens": gc.n_ctx,
                "boundary_ok": gc.boundary_ok and bc.boundary_ok, "ctx_truncated": max(gc.truncated, bc.truncated)}
        recs.append(rec)
    return pd.DataFrame(recs)


def score_continuations(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], prefix_id: int,
                        max_tokens: int = 4096) -> "Any":
    """Per passage: log P(passage | context) summed and per token (nats)."""
    import pandas as pd

    sc = loglikelihood(model, tokenizer, [(r["context"], r["passage"]) for r in rows], prefix_id, max_tokens)
    return pd.DataFrame([{"id": r["id"], "domain": r["domain"], "logp": s.total, "n_tokens": s.n,
                          "logp_per_token": s.total / s.n, "boundary_ok": s.boundary_ok,
                          "ctx_truncated": s.truncated} for r, s in zip(rows, sc)])


def to_bits(nats: Any) -> Any:
    """Convert natural-log quantities to bits."""
    return nats / LN2

"""Audit a paired benchmark for answers it gives away, without any language model.

A paired benchmark tests tacit judgment only if nothing on the surface of the two options tells
the good one from the bad one. This module measures the surface cues an audit of the first
stand-in benchmark found:

- vocabulary learnable from the training candidates (:func:`fit_vocab_logodds`,
  :func:`vocab_picks`, :func:`vocab_shuffle_test`);
- length, word length, vocabulary variety, emotive or stock wording and quote style
  (:func:`balance_table`);
- premises and motifs shared with the training corpus (:func:`nearest_training_neighbours`,
  :func:`shared_motifs`).

Everything is numpy and pandas; words are lower-cased runs of ``[a-z']``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cqa_utils.method.text import words as text_words

# Emotive words and stock phrases whose presence in one option and not the other is a cue.
# Matched as whole words or phrases, lower-cased; a trailing "*" matches any ending (stems are chosen so
# that it does not catch unrelated words: "heart" is listed by form because "heart*" would match "hearth").
EMOTIVE_CLICHE: tuple[str, ...] = (
    "tear", "tears", "tearful*", "heart", "hearts", "heartfelt", "heartbreak*", "heartbroken", "heartache", "soul", "souls",
    "suddenly", "shatter*", "sobbed", "sobbing", "sobs", "whispered softly", "weep*", "wept", "cried", "crying", "scream*",
    "gasp*", "trembl*", "anguish*", "despair*", "agony", "grief", "sorrow*", "devastat*", "overwhelm*", "joy", "joyful*",
    "bliss*", "ecstatic", "elated", "terrified", "horrified", "dread", "rage", "fury", "furious", "passion*", "forever",
    "deep down", "in that moment", "at that moment", "time stood still", "couldn't help but", "could not help but",
    "a wave of", "washed over", "welled up", "lump in", "skipped a beat", "took my breath away", "took her breath away",
    "with bated breath", "blood ran cold", "shiver down", "butterflies", "little did", "once and for all", "all along",
    "as if by magic", "miracle*", "beautiful", "magical", "precious", "cherish*", "never forget", "live on",
    "meant to be", "true love", "the truth was", "finally understood", "more than words", "no words",
    "fell to his knees", "fell to her knees", "from the bottom of", "against all odds",
)

# Motifs shared between training rows and benchmark v1 items (ids below are v1's), found by the
# audit of v1 and while writing v2; each is a tuple of word stems that must all occur in one text.
# They are regression cases: no later benchmark or calibration item may share one with training.
KNOWN_MOTIFS: tuple[tuple[str, ...], ...] = (
    ("lighthouse", "letter"),   # pair-lit-13 <-> train-062: lighthouse keeper, fortnightly letters
    ("mug", "tiles"),           # pair-lit-19 <-> train-018: mugs shattering on the kitchen tiles
    ("thunder",),               # pair-lit-05 <-> train-021: thunder rolling in as an ending
    ("market", "stall"),        # cont-lit-09 <-> train-070: rival stalls at a weekly market
    ("pool", "lifeguard"),      # cont-lit-11 <-> train-093: the old swimming pool after hours
    ("deck", "schedule"),       # cont-lit-04 <-> train-075: a ship deck's lighting schedule drifting
    ("piano", "tun"),           # train-001, train-071: the piano tuner's last visit
    ("ferry", "cat"),           # train-073: the ferry cat counting passengers
    ("hedgehog",),              # train-003, train-065: the lost or anxious hedgehog
    ("kettle", "arrested"),     # train-018: news of an arrest broken over the kettle
)

STOPWORDS: frozenset[str] = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between both but "
    "by can could did do does doing down during each few for from further had has have having he her here hers herself "
    "him himself his how i if in into is it it's its itself just me more most my myself no nor not now of off on once "
    "only or other our ours ourselves out over own same she should so some such than that the their theirs them "
    "themselves then there these they this those through to too under until up very was we were what when where which "
    "while who whom why will with would you your yours yourself yourselves i'm he's she's i'd i'll don't didn't wasn't "
    "one two said says say like back still went go got get came come went upon".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters and apostrophes), stray apostrophes stripped (:func:`text.words`)."""
    return text_words(text)


# ---------------------------------------------------------------- vocabulary model


@dataclass
class VocabModel:
    """Per-word log odds of appearing in a chosen rather than a rejected training candidate."""

    logodds: dict[str, float]
    n_chosen: int
    n_rejected: int
    alpha: float

    def score(self, text: str) -> float:
        """Mean log odds over the text's words seen in training; 0.0 when none was seen."""
        vals = [self.logodds[w] for w in words(text) if w in self.logodds]
        return float(np.mean(vals)) if vals else 0.0


def _candidates(train_rows: Iterable[dict[str, Any]]) -> list[tuple[list[str], int]]:
    """(candidates, expert_choice) of every training row that has a ``decision``."""
    return [(r["decision"]["candidates"], r["decision"]["expert_choice"]) for r in train_rows if "decision" in r]


def _fit(decisions: Sequence[tuple[Sequence[str], int]], alpha: float) -> VocabModel:
    chosen, rejected = Counter(), Counter()
    n_c = n_r = 0
    for cands, choice in decisions:
        for j, c in enumerate(cands):
            present = set(words(c))
            if j == choice:
                chosen.update(present)
                n_c += 1
            else:
                rejected.update(present)
                n_r += 1
    vocab = set(chosen) | set(rejected)
    lo = {}
    for w in vocab:
        dc, dr = chosen[w], rejected[w]
        lo[w] = math.log((dc + alpha) / (n_c - dc + alpha)) - math.log((dr + alpha) / (n_r - dr + alpha))
    return VocabModel(lo, n_c, n_r, alpha)


def fit_vocab_logodds(train_rows: Iterable[dict[str, Any]], alpha: float = 1.0) -> VocabModel:
    """Fit the bag-of-words cue model on the training candidates.

    For each word w, with d_c of the N_c chosen candidates and d_r of the N_r rejected candidates
    containing it (presence, not count), the add-``alpha`` smoothed log odds ratio is
    ``log((d_c+a)/(N_c-d_c+a)) - log((d_r+a)/(N_r-d_r+a))`` (natural log).
    """
    return _fit(_candidates(train_rows), alpha)


def vocab_picks(pairs_rows: Iterable[dict[str, Any]], model: VocabModel) -> pd.DataFrame:
    """Score each pair's options with the cue model; ``picks_good`` when good scores strictly higher."""
    out = []
    for r in pairs_rows:
        g, b = model.score(r["good"]), model.score(r["bad"])
        out.append({"id": r["id"], "domain": r["domain"], "score_good": g, "score_bad": b, "picks_good": g > b})
    return pd.DataFrame(out, columns=["id", "domain", "score_good", "score_bad", "picks_good"])


def vocab_shuffle_test(train_rows: Sequence[dict[str, Any]], pairs_rows: Sequence[dict[str, Any]],
                       n: int = 500, seed: int = 0, alpha: float = 1.0) -> pd.DataFrame:
    """Permutation test of the cue model: refit with each decision's expert choice drawn at random.

    Per domain: the observed number of pairs where the model picks good, the mean of that number
    over ``n`` refits on shuffled choices, and the one-sided p = (1 + #{shuffled >= observed}) / (n + 1).
    """
    decisions = _candidates(train_rows)
    pairs_rows = list(pairs_rows)
    observed = vocab_picks(pairs_rows, _fit(decisions, alpha)).groupby("domain")["picks_good"].sum()
    rng = np.random.default_rng(seed)
    null: dict[str, list[int]] = {d: [] for d in observed.index}
    for _ in range(n):
        shuffled = [(c, int(rng.integers(len(c)))) for c, _ch in decisions]
        counts = vocab_picks(pairs_rows, _fit(shuffled, alpha)).groupby("domain")["picks_good"].sum()
        for d in null:
            null[d].append(int(counts.get(d, 0)))
    rows = []
    for d, obs in observed.items():
        arr = np.array(null[d])
        rows.append({"domain": d, "n_pairs": sum(r["domain"] == d for r in pairs_rows), "observed": int(obs),
                     "shuffled_mean": float(arr.mean()), "p_one_sided": float((1 + (arr >= obs).sum()) / (n + 1))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- surface balance


def _cliche_patterns() -> list[re.Pattern[str]]:
    pats = []
    for entry in EMOTIVE_CLICHE:
        body = re.escape(entry.rstrip("*")).replace(r"\ ", r"\s+")
        tail = r"[a-z'-]*" if entry.endswith("*") else ""
        pats.append(re.compile(rf"(?<![a-z']){body}{tail}(?![a-z])"))
    return pats


_CLICHE = _cliche_patterns()


def emotive_hits(text: str) -> int:
    """How many occurrences of EMOTIVE_CLICHE entries the text contains."""
    low = text.lower()
    return sum(len(p.findall(low)) for p in _CLICHE)


def mean_word_length(text: str) -> float:
    """Mean number of characters per word token."""
    ws = words(text)
    return float(np.mean([len(w) for w in ws])) if ws else 0.0


def type_token_ratio(text: str) -> float:
    """Distinct word tokens over word tokens."""
    ws = words(text)
    return len(set(ws)) / len(ws) if ws else 0.0


_OPEN_SINGLE = re.compile(r"(?:^|(?<=[\s(\[—–-]))'(?=[A-Za-z0-9])")


def quote_style(text: str) -> str:
    """Dialogue quote marks a text uses: any of 'curly double', 'curly single', 'straight double',
    'straight single' (a ' that opens a word), joined by '+', or 'none'."""
    found = []
    if "“" in text or "”" in text:
        found.append("curly double")
    if "‘" in text:
        found.append("curly single")
    if '"' in text:
        found.append("straight double")
    if _OPEN_SINGLE.search(text):
        found.append("straight single")
    return "+".join(found) or "none"


def balance_table(pairs_rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Per pair: characters, mean word length, type-token ratio and emotive/cliché hits of good and
    bad, and the quote style of the whole item (context and both options)."""
    out = []
    for r in pairs_rows:
        row: dict[str, Any] = {"id": r["id"], "domain": r["domain"]}
        for side in ("good", "bad"):
            t = r[side]
            row[f"chars_{side}"] = len(t)
            row[f"wordlen_{side}"] = mean_word_length(t)
            row[f"ttr_{side}"] = type_token_ratio(t)
            row[f"emotive_{side}"] = emotive_hits(t)
        row["quote_style"] = quote_style(" ".join((r["context"], r["good"], r["bad"])))
        out.append(row)
    return pd.DataFrame(out)


def balance_summary(pairs_rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Per domain: in how many pairs good is longer, has longer words, has a higher type-token ratio,
    and how many good and bad options contain an emotive/cliché hit."""
    t = balance_table(pairs_rows)
    g = t.assign(longer=t.chars_good > t.chars_bad, wordlen=t.wordlen_good > t.wordlen_bad, ttr=t.ttr_good > t.ttr_bad,
                 emo_good=t.emotive_good > 0, emo_bad=t.emotive_bad > 0).groupby("domain")
    return pd.DataFrame({"n_pairs": g.size(), "good_longer": g.longer.sum(), "good_longer_words": g.wordlen.sum(),
                         "good_higher_ttr": g.ttr.sum(), "good_with_emotive": g.emo_good.sum(),
                         "bad_with_emotive": g.emo_bad.sum()}).reset_index()


# ---------------------------------------------------------------- overlap with training


def bench_text(row: dict[str, Any]) -> str:
    """The text of a benchmark item: context and both options, or context and passage."""
    return " ".join(row[f] for f in ("context", "good", "bad", "passage") if f in row)


def train_text(row: dict[str, Any]) -> str:
    """The text of a training row: its input and its judgment."""
    return " ".join((row.get("input", ""), row.get("output", "")))


def item_text(row: dict[str, Any]) -> str:
    """The text of any row: a training row's input and judgment, else a benchmark item's fields."""
    return train_text(row) if "output" in row else bench_text(row)


def tfidf_matrix(docs: Sequence[str], stopwords: frozenset[str] = STOPWORDS) -> np.ndarray:
    """Rows of L2-normalised TF-IDF vectors: tf = 1 + ln(count), idf = ln((1 + N) / (1 + df)) + 1."""
    toks = [[w for w in words(d) if w not in stopwords] for d in docs]
    vocab = {w: i for i, w in enumerate(sorted({w for t in toks for w in t}))}
    tf = np.zeros((len(docs), len(vocab)))
    for i, t in enumerate(toks):
        for w, c in Counter(t).items():
            tf[i, vocab[w]] = 1.0 + math.log(c)
    df = (tf > 0).sum(axis=0)
    x = tf * (np.log((1 + len(docs)) / (1 + df)) + 1.0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def nearest_training_neighbours(bench_rows: Sequence[dict[str, Any]], train_rows: Sequence[dict[str, Any]],
                                k: int = 1) -> pd.DataFrame:
    """The ``k`` reference rows most similar to each benchmark item (TF-IDF cosine, IDF fitted on both sets).

    The reference rows are normally the training corpus (input and judgment); any rows of the
    benchmark kinds work too, e.g. to compare a calibration set with the benchmark.
    """
    bench_rows, train_rows = list(bench_rows), list(train_rows)
    x = tfidf_matrix([bench_text(r) for r in bench_rows] + [item_text(r) for r in train_rows])
    sims = x[: len(bench_rows)] @ x[len(bench_rows):].T
    out = []
    for i, r in enumerate(bench_rows):
        for rank, j in enumerate(np.argsort(-sims[i], kind="stable")[:k], start=1):
            out.append({"id": r["id"], "rank": rank, "train_id": train_rows[j]["id"], "cosine": float(sims[i, j])})
    return pd.DataFrame(out, columns=["id", "rank", "train_id", "cosine"])


def _has_stem(text_words: set[str], stem: str) -> bool:
    return any(w.startswith(stem) for w in text_words)


def shared_motifs(bench_rows: Sequence[dict[str, Any]], train_rows: Sequence[dict[str, Any]],
                  motifs: Sequence[tuple[str, ...]] = KNOWN_MOTIFS) -> pd.DataFrame:
    """Motifs (tuples of word stems, all present in one text) found both in a benchmark item and in
    a training row: one row per (motif, benchmark item) with the training ids that share it."""
    bw = [(r["id"], set(words(bench_text(r)))) for r in bench_rows]
    tw = [(r["id"], set(words(item_text(r)))) for r in train_rows]
    out = []
    for m in motifs:
        tids = [i for i, ws in tw if all(_has_stem(ws, s) for s in m)]
        if not tids:
            continue
        for bid, ws in bw:
            if all(_has_stem(ws, s) for s in m):
                out.append({"motif": " + ".join(m), "id": bid, "train_ids": tids})
    return pd.DataFrame(out, columns=["motif", "id", "train_ids"])

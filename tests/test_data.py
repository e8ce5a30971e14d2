"""Quality checks of the stand-in corpus and benchmark (issue: the stand-in data)."""

from __future__ import annotations

import re
from collections import Counter
from itertools import combinations

import pytest

from cqa_utils.config import STANDIN_DIR
from cqa_utils.data import coverage_counts, find_leaks, load, load_all, shingles

TRAIN = load(STANDIN_DIR / "train.jsonl", "train")
PAIRS = load(STANDIN_DIR / "benchmark" / "pairs.jsonl", "pairs")
CONTS = load(STANDIN_DIR / "benchmark" / "continuations.jsonl", "continuations")
words = lambda s: len(s.split())  # noqa: E731


def test_counts_and_schema():
    assert len(TRAIN) == 105
    assert Counter(r["domain"] for r in PAIRS.rows) == {"literary": 20, "factual": 20}
    assert Counter(r["domain"] for r in CONTS.rows) == {"literary": 20, "news": 10, "popsci": 10}
    for r in TRAIN.rows:
        d = r["decision"]
        assert 2 <= len(d["candidates"]) <= 4 and 0 <= d["expert_choice"] < len(d["candidates"])
        assert r["input"].startswith(d["context"]) and all(c in r["input"] for c in d["candidates"])
        assert r["genre"] in {"literary", "crime", "children", "romance", "science fiction", "historical",
                              "stage and screen", "game dialogue"}
    load_all(TRAIN.path, PAIRS.path, CONTS.path)  # validates ids, types, domains and leakage


def test_unique_ids_across_files():
    ids = [r["id"] for rec in (TRAIN, PAIRS, CONTS) for r in rec.rows]
    assert len(ids) == len(set(ids))


def test_length_ranges():
    for r in TRAIN.rows:
        assert 120 <= words(r["output"]) <= 300, r["id"]
    for r in CONTS.rows:
        assert 60 <= words(r["context"]) <= 200 and 60 <= words(r["passage"]) <= 150, r["id"]


def test_genres_kinds_and_coverage_all_present():
    assert len({r["genre"] for r in TRAIN.rows}) == 8
    assert {r["decision_kind"] for r in TRAIN.rows} == {"plot turn", "character response", "disclosure", "scene design", "ending"}
    cov = coverage_counts(TRAIN.rows)
    assert all(v > 0 for v in cov["by_kind"].values())  # all three kinds appear in the corpus (§1.3)
    assert Counter(r["decision"]["expert_choice"] for r in TRAIN.rows).most_common(1)[0][1] < 50  # no answer-position bias


@pytest.fixture(scope="module")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from cqa_utils.config import get_profile
    from cqa_utils.models import gguf_path

    g = gguf_path(get_profile("cpu"))
    return AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)


def test_pair_token_ratio(smol_tokenizer):
    for r in PAIRS.rows:
        g = len(smol_tokenizer(" " + r["good"]).input_ids)
        b = len(smol_tokenizer(" " + r["bad"]).input_ids)
        assert 0.8 <= g / b <= 1.25, (r["id"], g, b)


def test_no_near_duplicate_training_outputs():
    sh = [shingles(r["output"], 5) for r in TRAIN.rows]
    worst = max((len(a & b) / len(a | b), i, j) for (i, a), (j, b) in combinations(enumerate(sh), 2))
    assert worst[0] <= 0.3, worst


def test_no_8_word_span_shared_with_training():
    assert find_leaks(TRAIN, PAIRS, CONTS, 8) == []


GENERIC = {"He", "She", "How", "You", "I'd", "I'm", "I've", "I'll", "It's", "Hill", "Lane", "Street", "Road", "House", "Hotel"}


def _names(text: str) -> set[str]:
    """Capitalised words that do not open a sentence or a line: names of people and places."""
    out = set()
    for sent in re.split(r'(?<=[.!?…:;"“”])\s+|\n', text):
        out.update(t for t in re.findall(r"[A-Za-z][a-z'’]+", sent)[1:] if t[0].isupper())
    return out


def test_no_character_or_place_shared_with_training():
    train = set().union(*(_names(r["input"] + "\n" + r["output"]) for r in TRAIN.rows))
    bench = set().union(*(_names("\n".join(r[f] for f in ("context", "good", "bad", "passage") if f in r))
                          for r in PAIRS.rows + CONTS.rows))
    assert train & bench <= GENERIC, sorted(train & bench - GENERIC)

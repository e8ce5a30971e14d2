"""One word tokeniser (method/text.py): each call site gives what its own regular expression gave before."""

from __future__ import annotations

import json
import re

from cqa_utils.method import audit, data, decomposition
from cqa_utils.method.config import STANDIN_DIR


def _standin_texts() -> list[str]:
    out: list[str] = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    for f in sorted(STANDIN_DIR.rglob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                walk(json.loads(line))
    return out


def test_the_three_call_sites_agree_with_their_old_tokenisers_on_the_standin():
    texts = _standin_texts()
    assert len(texts) > 2000
    old_audit = lambda t: [w.strip("'") for w in re.findall(r"[a-z']+", t.lower()) if w.strip("'")]  # noqa: E731
    old_decomposition = lambda t: re.findall(r"[a-z']+", t.lower())  # noqa: E731
    old_words = lambda t: re.findall(r"[a-z0-9']+", t.lower())  # noqa: E731

    def old_shingles(t: str, n: int = 8) -> set:
        w = old_words(t)
        return {tuple(w[k:k + n]) for k in range(len(w) - n + 1)}

    assert all(audit.words(t) == old_audit(t) for t in texts)
    assert all(decomposition.words(t) == old_decomposition(t) for t in texts)
    assert all(data.shingles(t) == old_shingles(t) for t in texts)
    # the three really differ on this data (else the test would show nothing)
    assert any(old_audit(t) != old_decomposition(t) for t in texts) and any(old_words(t) != old_decomposition(t) for t in texts)

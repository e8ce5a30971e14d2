"""Load and validate the JSON Lines data files; split and describe the training corpus.

Every problem is reported as ``file:line: field: expected …, found …`` before any model is
loaded. The schemas are in the README and the book's Methods chapter; unknown keys are kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cqa_utils.method.text import words as text_words

TOUCH_KINDS = ("intent", "audience", "reality")
PAIR_DOMAINS = ("literary", "factual")
CONTINUATION_DOMAINS = ("literary", "news", "popsci")


class DataError(ValueError):
    """A data file violates its contract; the message names file, line and field."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}" + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


@dataclass
class Records:
    """Rows of one file with the 1-based line number each came from."""

    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)


def read_jsonl(path: str | Path) -> Records:
    """Parse a JSON Lines file strictly: UTF-8 without BOM, one JSON object per non-blank line."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    if path.is_dir():
        raise DataError(path, None, None, "expected a JSON Lines file, found a directory")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise DataError(path, 1, None, "expected UTF-8 without a byte-order mark, found a UTF-8 BOM (re-save without BOM)")
    rows, lines = [], []
    for no, bline in enumerate(raw.split(b"\n"), start=1):
        try:
            text = bline.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = bline[e.start:e.start + 1]
            raise DataError(path, no, None, f"expected UTF-8, found invalid byte {bad!r} at column {e.start + 1}") from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, no, None,
                            f"expected one JSON object per line, found malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, no, None, f"expected a JSON object, found {type(obj).__name__}")
        rows.append(obj)
        lines.append(no)
    if not rows:
        raise DataError(path, None, None, "expected at least one record, found an empty file")
    return Records(path, rows, lines)


def _need_str(rec: Records, i: int, obj: dict[str, Any], key: str, prefix: str = "") -> str:
    name = prefix + key
    if key not in obj:
        raise DataError(rec.path, rec.lines[i], name, "required field is missing")
    val = obj[key]
    if not isinstance(val, str):
        raise DataError(rec.path, rec.lines[i], name, f"expected a string, found {type(val).__name__} {json.dumps(val)[:40]}")
    if not val.strip():
        raise DataError(rec.path, rec.lines[i], name, "expected non-empty text, found an empty string")
    return val


def _check_ids(rec: Records) -> None:
    seen: dict[str, int] = {}
    for i, row in enumerate(rec.rows):
        rid = _need_str(rec, i, row, "id")
        if rid in seen:
            raise DataError(rec.path, rec.lines[i], "id", f"expected unique ids, found {rid!r} again (first on line {seen[rid]})")
        seen[rid] = rec.lines[i]


def _check_domain(rec: Records, i: int, allowed: tuple[str, ...]) -> None:
    dom = _need_str(rec, i, rec.rows[i], "domain")
    if dom not in allowed:
        raise DataError(rec.path, rec.lines[i], "domain", f"expected one of {list(allowed)}, found {dom!r}")


def validate_train(rec: Records) -> Records:
    """Training corpus: alpaca fields plus optional ``decision`` and ``touches``."""
    _check_ids(rec)
    for i, row in enumerate(rec.rows):
        for key in ("instruction", "output"):
            _need_str(rec, i, row, key)
        if "input" in row and not isinstance(row["input"], str):
            raise DataError(rec.path, rec.lines[i], "input", f"expected a string, found {type(row['input']).__name__}")
        if "decision" in row:
            d = row["decision"]
            if not isinstance(d, dict):
                raise DataError(rec.path, rec.lines[i], "decision", f"expected an object, found {type(d).__name__}")
            _need_str(rec, i, d, "context", "decision.")
            cands = d.get("candidates")
            if not isinstance(cands, list) or len(cands) < 2:
                found = f"{len(cands)} candidate(s)" if isinstance(cands, list) else type(cands).__name__
                raise DataError(rec.path, rec.lines[i], "decision.candidates", f"expected a list of at least 2 candidates, found {found}")
            for j, c in enumerate(cands):
                if not isinstance(c, str) or not c.strip():
                    raise DataError(rec.path, rec.lines[i], f"decision.candidates[{j}]",
                                    f"expected non-empty text, found {json.dumps(c)[:40]}")
            ch = d.get("expert_choice")
            if isinstance(ch, bool) or not isinstance(ch, int):
                raise DataError(rec.path, rec.lines[i], "decision.expert_choice", f"expected an integer index, found {json.dumps(ch)}")
            if not 0 <= ch < len(cands):
                raise DataError(rec.path, rec.lines[i], "decision.expert_choice", f"expected 0..{len(cands) - 1}, found {ch}")
        if "touches" in row:
            t = row["touches"]
            if not isinstance(t, list) or any(k not in TOUCH_KINDS for k in t) or len(set(t)) != len(t):
                raise DataError(rec.path, rec.lines[i], "touches", f"expected a subset of {list(TOUCH_KINDS)}, found {json.dumps(t)}")
    return rec


def validate_pairs(rec: Records) -> Records:
    """Benchmark pairs: id, domain (literary|factual), context, good, bad."""
    _check_ids(rec)
    for i, row in enumerate(rec.rows):
        _check_domain(rec, i, PAIR_DOMAINS)
        for key in ("context", "good", "bad"):
            _need_str(rec, i, row, key)
        if row["good"].strip() == row["bad"].strip():
            raise DataError(rec.path, rec.lines[i], "bad", "expected a different text from `good`, found the same text")
    return rec


def validate_continuations(rec: Records) -> Records:
    """Continuation passages: id, domain (literary|news|popsci), context, passage."""
    _check_ids(rec)
    for i, row in enumerate(rec.rows):
        _check_domain(rec, i, CONTINUATION_DOMAINS)
        _need_str(rec, i, row, "context")
        _need_str(rec, i, row, "passage")
        pub = row.get("published")
        if pub is not None and (not isinstance(pub, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", pub)):
            raise DataError(rec.path, rec.lines[i], "published", f"expected YYYY-MM-DD, found {json.dumps(pub)}")
    return rec


KINDS = {"train": validate_train, "pairs": validate_pairs, "continuations": validate_continuations}


def guess_kind(rec: Records) -> str:
    """Which contract a file follows, from the keys of its first record."""
    first = rec.rows[0]
    if "passage" in first:
        return "continuations"
    if "good" in first or "bad" in first:
        return "pairs"
    if "output" in first or "instruction" in first:
        return "train"
    raise DataError(rec.path, rec.lines[0], None,
                    "cannot tell the file's kind: expected `output` (train), `good`/`bad` (pairs) or `passage` (continuations)")


def load(path: str | Path, kind: str | None = None) -> Records:
    """Read and validate one data file; ``kind`` is guessed from its keys when omitted."""
    rec = read_jsonl(path)
    kind = kind or guess_kind(rec)
    return KINDS[kind](rec)


# ---------------------------------------------------------------- leakage between train and benchmark

def shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams of a text."""
    words = text_words(text, strip_quotes=False, digits=True)
    return {tuple(words[k:k + n]) for k in range(len(words) - n + 1)}


def benchmark_texts(pairs: Records, conts: Records) -> list[tuple[Path, int, str, str]]:
    """(file, line, field, text) for every benchmark text field."""
    out = []
    for rec, fields in ((pairs, ("context", "good", "bad")), (conts, ("context", "passage"))):
        for row, line in zip(rec.rows, rec.lines):
            out.extend((rec.path, line, f, row[f]) for f in fields)
    return out


def shingle_index(texts: Iterable[tuple[Any, str]], n: int = 8) -> dict[tuple[str, ...], Any]:
    """Every ``n``-word span of the texts, mapped to the origin of its first text."""
    index: dict[tuple[str, ...], Any] = {}
    for origin, text in texts:
        for s in shingles(text, n):
            index.setdefault(s, origin)
    return index


def overlaps(texts: Iterable[tuple[Path, int, str, str]], index: dict[tuple[str, ...], Any],
             n: int = 8) -> Iterator[tuple[Path, int, str, tuple[str, ...], Any]]:
    """(file, line, field, span, origin) for each text sharing an ``n``-word span with ``index``."""
    for path, line, field, text in texts:
        hit = next((s for s in shingles(text, n) if s in index), None)
        if hit:
            yield path, line, field, hit, index[hit]


def find_leaks(train: Records, pairs: Records, conts: Records, n: int = 8) -> list[dict[str, Any]]:
    """Benchmark fields sharing an ``n``-word span with any training text."""
    index = shingle_index(((line, " ".join([row.get("input", ""), row["output"], row.get("decision", {}).get("context", "")]))
                           for row, line in zip(train.rows, train.lines)), n)
    return [{"file": str(path), "line": line, "field": field, "span": " ".join(hit), "train_line": origin}
            for path, line, field, hit, origin in overlaps(benchmark_texts(pairs, conts), index, n)]


def check_no_leaks(train: Records, pairs: Records, conts: Records, n: int = 8) -> None:
    """Raise a DataError at the first benchmark text that also appears in training."""
    leaks = find_leaks(train, pairs, conts, n)
    if leaks:
        lk = leaks[0]
        raise DataError(lk["file"], lk["line"], lk["field"],
                        f"expected no overlap with the training corpus, found the {n}-word span "
                        f"{lk['span']!r} also in {train.path}:{lk['train_line']} ({len(leaks)} overlapping field(s) in all)")


# ---------------------------------------------------------------- split and description

def split_train_val(rows: list[dict[str, Any]], val_size: float = 0.1, seed: int = 42) -> tuple[list[int], list[int]]:
    """Indices of the train/validation rows, split exactly as LLaMA-Factory does (datasets, file order)."""
    from datasets import Dataset  # deferred: `cqa validate` checks files without paying for datasets' import

    ds = Dataset.from_dict({"idx": list(range(len(rows)))})
    sp = ds.train_test_split(test_size=val_size, seed=seed)
    return list(sp["train"]["idx"]), list(sp["test"]["idx"])


def coverage_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """§3.2's descriptive count: how many judgments touch 0/1/2/3 kinds, and each kind."""
    n_kinds = Counter(len(r.get("touches", [])) for r in rows if "touches" in r)
    per_kind = Counter(k for r in rows for k in r.get("touches", []))
    return {
        "n_with_touches": sum(1 for r in rows if "touches" in r),
        "by_number_of_kinds": {k: n_kinds.get(k, 0) for k in (3, 2, 1, 0)},
        "by_kind": {k: per_kind.get(k, 0) for k in TOUCH_KINDS},
    }


LETTERS = "ABCDEFGHIJ"
ABLATION_INSTRUCTION_NOTE = "Answer with the letter and the text of the option the story should take."
CONTROL_INSTRUCTION = "Continue the text."


def without_reasoning(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The no-reasoning ablation: each row's output reduced to the expert's choice (letter and option text).

    The prompt is left exactly as it is (the same instruction and input); only the chain-of-thought
    judgment is removed from the target, so a difference between the two adapters is attributable to
    the reasoning text. Rows without a ``decision`` cannot be reduced and raise.
    """
    out = []
    for r in rows:
        d = r.get("decision")
        if not d:
            raise ValueError(f"row {r.get('id')}: no 'decision' field, so its output cannot be reduced to a choice")
        k = d["expert_choice"]
        out.append({**r, "output": f"{LETTERS[k]}. {d['candidates'][k]}"})
    return out


def preference_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Positive-control training rows: each calibration pair's context continued by its good option."""
    return [{"id": f"control-{p['id']}", "instruction": CONTROL_INSTRUCTION, "input": p["context"], "output": p["good"]}
            for p in pairs]


@dataclass
class Corpus:
    """The three validated data files of one run."""

    train: Records
    pairs: Records
    continuations: Records


def load_calibration(path: str | Path, corpus: Corpus, n: int = 8) -> Records:
    """The positive control's pairs, validated, and kept apart from training and from the benchmark.

    Raises a DataError at the first calibration text sharing an ``n``-word span with the training
    corpus or with any benchmark text.
    """
    cal = load(path, "pairs")
    none = Records(Path(path), [], [])
    check_no_leaks(corpus.train, cal, none, n)
    index = shingle_index((((p, line, field), text) for p, line, field, text in benchmark_texts(corpus.pairs, corpus.continuations)), n)
    for cpath, line, field, hit, (bpath, bline, bfield) in overlaps(benchmark_texts(cal, none), index, n):
        raise DataError(cpath, line, field, f"expected calibration items apart from the benchmark, found the {n}-word "
                        f"span {' '.join(hit)!r} also in {bpath}:{bline} ({bfield})")
    return cal


def load_all(train: str | Path, pairs: str | Path, continuations: str | Path, leak_ngram: int = 8) -> Corpus:
    """Load and validate all three files and check that the benchmark does not leak into training."""
    c = Corpus(load(train, "train"), load(pairs, "pairs"), load(continuations, "continuations"))
    check_no_leaks(c.train, c.pairs, c.continuations, leak_ngram)
    return c

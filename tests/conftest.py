"""Shared fixtures: the smoke model, small data directories, helpers to write bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cqa_utils.method.config import STANDIN_DIR, get_profile
from cqa_utils.pipeline.cache import refresh_model


@pytest.fixture(scope="session")
def smoke():
    """(profile, tokenizer, model, prefix id) of the smoke profile."""
    from cqa_utils.method.models import load_model, load_tokenizer, prefix_token_id

    prof = get_profile("smoke")
    refresh_model(prof)
    tok = load_tokenizer(prof)
    return prof, tok, load_model(prof), prefix_token_id(tok)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def small_data(dest: Path, n_train: int = 24, n_pairs: int = 4, n_conts: int = 3) -> Path:
    """A copy of the stand-in cut down for fast pipeline tests: n_train rows; n_pairs per pair domain (benchmark and
    calibration); n_conts per passage domain."""
    pairs, conts = read_rows(STANDIN_DIR / "benchmark" / "pairs.jsonl"), read_rows(STANDIN_DIR / "benchmark" / "continuations.jsonl")
    cal = read_rows(STANDIN_DIR / "calibration" / "pairs.jsonl")
    pick = lambda rows, dom, n: [r for r in rows if r["domain"] == dom][:n]  # noqa: E731
    write_rows(dest / "train.jsonl", read_rows(STANDIN_DIR / "train.jsonl")[:n_train])
    write_rows(dest / "benchmark" / "pairs.jsonl", pick(pairs, "literary", n_pairs) + pick(pairs, "factual", n_pairs))
    write_rows(dest / "benchmark" / "continuations.jsonl",
               pick(conts, "literary", n_conts) + pick(conts, "news", n_conts) + pick(conts, "popsci", n_conts))
    write_rows(dest / "calibration" / "pairs.jsonl", pick(cal, "literary", n_pairs) + pick(cal, "factual", n_pairs))
    return dest


@pytest.fixture
def standin_copy(tmp_path: Path) -> Path:
    """A writable copy of the full stand-in data directory."""
    d = tmp_path / "data"
    shutil.copytree(STANDIN_DIR, d)
    return d

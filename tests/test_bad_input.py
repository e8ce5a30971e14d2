"""The bad-input suite: every case stops with a message naming what was expected, what was found and where,
and nothing already in a run directory is overwritten or deleted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cqa_utils import cli
from cqa_utils.method.data import DataError, load, load_all
from cqa_utils.pipeline.artifacts import Run, RunDirError, RunLock, write_json
from tests.conftest import read_rows, write_rows

PAIR = {"id": "p1", "domain": "literary", "context": "Nessa waited.", "good": "Rain fell.", "bad": "Sun spoke."}
CONT = {"id": "c1", "domain": "news", "context": "In Tolbrook today,", "passage": "the council met."}
TRAIN = {"id": "t1", "instruction": "Judge.", "input": "Scene.", "output": "Choose B.",
         "decision": {"context": "Scene.", "candidates": ["A text", "B text"], "expert_choice": 1},
         "touches": ["intent"]}


def _write(tmp_path: Path, text: str | bytes, name: str = "f.jsonl") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _lines(*objs: dict) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


CASES = [
    # (name, kind, file content, expected message fragments)
    ("malformed_json", "pairs", _lines(PAIR) + '{"id": "p2", "domain": \n', [":2:", "malformed JSON"]),
    ("utf8_bom", "pairs", b"\xef\xbb\xbf" + _lines(PAIR).encode(), [":1:", "BOM"]),
    ("invalid_utf8", "pairs", _lines(PAIR).encode() + b'{"id": "p2\xff"}\n', [":2:", "invalid byte"]),
    ("not_an_object", "pairs", _lines(PAIR) + "[1, 2]\n", [":2:", "expected a JSON object, found list"]),
    ("wrong_type", "pairs", _lines(dict(PAIR, good=3)), [":1:", "good", "expected a string, found int"]),
    ("missing_field", "pairs", _lines({k: v for k, v in PAIR.items() if k != "bad"}), [":1:", "bad", "missing"]),
    ("empty_string", "pairs", _lines(dict(PAIR, context="  ")), [":1:", "context", "empty"]),
    ("duplicate_id", "pairs", _lines(PAIR, dict(PAIR, good="Other.")), [":2:", "id", "'p1' again", "line 1"]),
    ("unknown_domain", "pairs", _lines(dict(PAIR, domain="poetry")), [":1:", "domain", "'poetry'"]),
    ("same_good_and_bad", "pairs", _lines(dict(PAIR, bad=PAIR["good"])), [":1:", "bad", "same text"]),
    ("unknown_cont_domain", "continuations", _lines(dict(CONT, domain="factual")), [":1:", "domain", "literary"]),
    ("bad_date", "continuations", _lines(dict(CONT, published="May 2025")), [":1:", "published", "YYYY-MM-DD"]),
    ("choice_out_of_range", "train", _lines({**TRAIN, "decision": {**TRAIN["decision"], "expert_choice": 2}}),
     [":1:", "decision.expert_choice", "expected 0..1, found 2"]),
    ("choice_not_int", "train", _lines({**TRAIN, "decision": {**TRAIN["decision"], "expert_choice": True}}),
     [":1:", "decision.expert_choice", "integer"]),
    ("one_candidate", "train", _lines({**TRAIN, "decision": {**TRAIN["decision"], "candidates": ["only"], "expert_choice": 0}}),
     [":1:", "decision.candidates", "at least 2", "1 candidate"]),
    ("empty_candidate", "train", _lines({**TRAIN, "decision": {**TRAIN["decision"], "candidates": ["a", ""]}}),
     [":1:", "decision.candidates[1]"]),
    ("unknown_touch", "train", _lines(dict(TRAIN, touches=["intent", "style"])), [":1:", "touches", "style"]),
    ("empty_file", "pairs", "", ["empty file"]),
    ("blank_lines_only", "pairs", "\n  \n", ["empty file"]),
]


@pytest.mark.parametrize("name,kind,content,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_rejected_with_location(tmp_path, name, kind, content, fragments):
    p = _write(tmp_path, content, f"{name}.jsonl")
    with pytest.raises(DataError) as e:
        load(p, kind)
    msg = str(e.value)
    assert str(p) in msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "nope.jsonl", "pairs")


def test_validate_cli_reports_and_exits_2(tmp_path, capsys):
    p = _write(tmp_path, _lines(PAIR, PAIR))
    assert cli.main(["validate", str(p)]) == 2
    assert f"{p}:2: id:" in capsys.readouterr().err
    ok = _write(tmp_path, _lines(PAIR), "ok.jsonl")
    assert cli.main(["validate", str(ok)]) == 0


def test_same_text_in_training_and_benchmark(standin_copy):
    train = read_rows(standin_copy / "train.jsonl")
    pairs = read_rows(standin_copy / "benchmark" / "pairs.jsonl")
    pairs[3]["context"] = train[7]["output"][:400]  # a benchmark context copied from a training judgment
    write_rows(standin_copy / "benchmark" / "pairs.jsonl", pairs)
    with pytest.raises(DataError) as e:
        bench = standin_copy / "benchmark"
        load_all(standin_copy / "train.jsonl", bench / "pairs.jsonl", bench / "continuations.jsonl")
    assert "pairs.jsonl:4: context" in str(e.value) and "train.jsonl:8" in str(e.value)


def test_long_context_is_cut_from_the_left_not_the_continuation(smoke):
    from cqa_utils.method.scoring import Scorer

    prof, tok, model, pid = smoke
    row = dict(PAIR, context="Nessa waited by the long grey pier. " * 600)  # far beyond the 4096-token window
    out = Scorer(model, tok, pid).pairs([row]).iloc[0]
    assert out.ctx_truncated > 0
    assert out.n_tokens_good == len(tok(" " + PAIR["good"], add_special_tokens=False).input_ids)


def test_unknown_profile_and_parameter(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "gpu-please"])
    assert "invalid choice" in capsys.readouterr().err
    from cqa_utils.method.config import get_profile

    with pytest.raises(ValueError, match="unknown profile 'gpu-please'"):
        get_profile("gpu-please")
    assert cli.main(["run", "--profile", "smoke", "--run-dir", str(tmp_path / "r"), "-p", "learning_rate=0.1"]) == 2
    assert "unknown notebook parameter(s) ['learning_rate']" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("param", ["device=cuda", "model=Qwen/Qwen2.5-0.5B", "profile=paper", "run_dir=/tmp/elsewhere"])
def test_resolved_parameters_are_set_by_options_not_by_p(tmp_path, capsys, param):
    """Profile, run directory, data folder, device and model are resolved once by `cqa run` from its options;
    a `-p` for one of them would let a notebook run with another value than the preflight checked."""
    assert cli.main(["run", "--profile", "smoke", "--run-dir", str(tmp_path / "r"), "-p", param]) == 2
    err = capsys.readouterr().err
    assert f"['{param.split('=')[0]}'] are set by cqa run's own options" in err and "--device" in err
    assert not (tmp_path / "r").exists()


def test_bad_data_leaves_existing_run_untouched(tmp_path, standin_copy, capsys):
    run = tmp_path / "run"
    Run(run, "smoke")
    write_json(run / "artifacts" / "05_delta_delta_i" / "keep.json", {"x": 1})
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    pairs = read_rows(standin_copy / "benchmark" / "pairs.jsonl")
    pairs[0]["domain"] = "poetry"
    write_rows(standin_copy / "benchmark" / "pairs.jsonl", pairs)
    assert cli.main(["run", "--profile", "smoke", "--run-dir", str(run), "--data-dir", str(standin_copy)]) == 2
    assert "pairs.jsonl:1: domain" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_run_dir_from_another_version_is_refused(tmp_path):
    run = tmp_path / "run"
    write_json(run / "run.json", {"format": 1, "code_version": "0.0.1", "profile": "smoke"})
    with pytest.raises(RunDirError, match="written by cqa_utils 0.0.1"):
        Run(run, "smoke")
    assert json.loads((run / "run.json").read_text())["code_version"] == "0.0.1"
    Run(tmp_path / "other", "cpu")
    with pytest.raises(RunDirError, match="holds a 'cpu' run"):
        Run(tmp_path / "other", "smoke")


def test_second_run_into_same_dir_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunDirError, match="in use by another run"):
            with RunLock(tmp_path):
                pass
    (tmp_path / ".lock").write_text("999999999 stale")  # a killed run's lock (no such pid) is taken over
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())


@pytest.fixture
def adapter_dir(tmp_path, smoke):
    from peft import get_peft_model

    from cqa_utils.method.models import load_model, model_identity
    from cqa_utils.method.train import lora_config, save_adapter_identity

    prof = smoke[0]
    m = get_peft_model(load_model(prof), lora_config(prof.hparams))
    d = tmp_path / "adapter"
    m.save_pretrained(d)
    save_adapter_identity(d, model_identity(m.get_base_model()), prof.name)
    return d


def test_adapter_trained_on_another_base(adapter_dir):
    from cqa_utils.method.models import model_identity, smoke_model
    from cqa_utils.method.sweep import AdapterMismatch, attach

    other = smoke_model(vocab_size=512)
    with pytest.raises(AdapterMismatch, match="different base model"):
        attach(other, adapter_dir, "a", model_identity(other))
    (adapter_dir / "cqa_base.json").unlink()  # a foreign adapter without our record: peft's shape check
    from transformers import Qwen2Config, Qwen2ForCausalLM

    narrow = Qwen2ForCausalLM(Qwen2Config(vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(AdapterMismatch, match="cannot load adapter"):
        attach(narrow, adapter_dir, "a", model_identity(narrow))


def test_truncated_checkpoint_file(adapter_dir, smoke):
    from cqa_utils.method.models import load_model, model_identity
    from cqa_utils.method.sweep import AdapterMismatch, attach

    f = adapter_dir / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    base = load_model(smoke[0])
    with pytest.raises(AdapterMismatch, match="cannot load adapter"):
        attach(base, adapter_dir, "a", model_identity(base))
    f.unlink()
    with pytest.raises(AdapterMismatch, match="adapter_model.safetensors missing"):
        attach(base, adapter_dir, "a", model_identity(base))


def test_calibration_pairs_must_stay_apart_from_benchmark_and_training(standin_copy):
    from cqa_utils.method.data import load_all, load_calibration
    from tests.conftest import read_rows, write_rows

    bench = standin_copy / "benchmark"
    corpus = load_all(standin_copy / "train.jsonl", bench / "pairs.jsonl", bench / "continuations.jsonl")
    cal_path = standin_copy / "calibration" / "pairs.jsonl"
    assert len(load_calibration(cal_path, corpus)) == 40  # the shipped calibration set is apart from both
    cal = read_rows(cal_path)
    cal[2]["good"] = read_rows(bench / "continuations.jsonl")[0]["passage"]  # a benchmark passage, copied
    write_rows(cal_path, cal)
    with pytest.raises(DataError) as e:
        load_calibration(cal_path, corpus)
    assert "pairs.jsonl:3: good" in str(e.value) and "continuations.jsonl:1 (passage)" in str(e.value)
    cal[2]["good"] = read_rows(standin_copy / "train.jsonl")[0]["output"]  # a training judgment, copied
    write_rows(cal_path, cal)
    with pytest.raises(DataError, match="train.jsonl:1"):
        load_calibration(cal_path, corpus)

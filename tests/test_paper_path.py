"""The paper profile's code path without a GPU or the hub: a tiny Qwen2 saved in Hugging Face format.

The ``paper`` profile reads its model with ``from_pretrained(model_id)``; ``Profile.with_model`` (what
``cqa run --model DIR`` sets) points it at a local folder. Here that folder holds a 2-layer random Qwen2
and its tokenizer, so everything the 7B run does happens in seconds: bf16 weights, the paper's LoRA with
the trainable count checked against the config, two training steps with checkpoints, scoring with an
adapter attached and a switch between adapters as the epoch sweep does. On a machine with CUDA the same
test runs on the GPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from cqa_utils.method import config, deviations, device, models
from cqa_utils.method import train as T
from cqa_utils.method.config import get_profile
from cqa_utils.method.scoring import Scorer
from cqa_utils.method.sweep import attach, detach, score_benchmark
from cqa_utils.pipeline.notebook import setup
from tests.conftest import read_rows, small_data

DEVICE = "cuda" if models.cuda_available() else "cpu"


@pytest.fixture(scope="module")
def tiny_hub_folder(tmp_path_factory) -> Path:
    """A tiny random Qwen2 + tokenizer saved as a hub model is laid out (config.json, safetensors, tokenizer)."""
    out = tmp_path_factory.mktemp("tiny-qwen2")
    tok = models.smoke_tokenizer(models._smoke_texts())
    models.smoke_model(len(tok), seed=1).to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def paper_like(tiny_hub_folder):
    """The paper profile reading the tiny folder, on this machine's device; a high learning rate so that two
    steps move the adapter visibly (the warmup's first step has learning rate 0)."""
    prof = get_profile("paper", model=str(tiny_hub_folder)).on_device(DEVICE)
    return prof.with_overrides(num_train_epochs=2, learning_rate=1e-2)


def test_with_model_points_the_hub_profile_at_a_folder(tiny_hub_folder):
    prof = get_profile("paper", model=str(tiny_hub_folder))
    assert (prof.model_kind, prof.dtype, prof.device) == ("hub", "bfloat16", "cuda")
    assert prof.model_id == str(tiny_hub_folder) and models.model_source(prof) == str(tiny_hub_folder)
    assert prof.expected_trainable_params is None  # the pinned 7B count does not apply to another model
    assert get_profile("paper", model="Qwen/Qwen2.5-7B").expected_trainable_params == 80_740_352
    with pytest.raises(ValueError, match="fixed model"):
        get_profile("cpu", model=str(tiny_hub_folder))


def test_paper_path_end_to_end(paper_like, tmp_path):
    prof = paper_like
    tok, model = models.load_tokenizer(prof), models.load_model(prof)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in model.parameters()} == {DEVICE}
    assert models.train_in_bf16(prof) and T.sft_config(prof, tmp_path).bf16
    data = small_data(tmp_path / "data", n_train=6, n_pairs=2, n_conts=1)
    rows = read_rows(data / "train.jsonl")
    pairs, conts = read_rows(data / "benchmark" / "pairs.jsonl"), read_rows(data / "benchmark" / "continuations.jsonl")
    identity = models.model_identity(model)
    pid = models.prefix_token_id(tok)
    base_pairs, base_conts = score_benchmark(Scorer(model, tok, pid, prof.score_batch_tokens), pairs, conts)

    summ = T.train(prof, model, tok, rows[:2], rows[2:4], tmp_path / "ck", progress=lambda *_: None)
    # by hand: r·(in+out) per target, hidden 64, FFN 128, 4 heads of 16 with 2 KV heads, 2 layers, r = 32
    per_layer = (64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64)
    assert summ["trainable_params"] == 32 * per_layer * 2 == 65_536
    ck = T.complete_checkpoints(tmp_path / "ck")
    assert sorted(ck) == [1, 2] and [c.name for c in ck.values()] == ["checkpoint-1", "checkpoint-2"]
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    assert lora_a.dtype == torch.float32  # LoRA weights fp32 on the bf16 base, as LLaMA-Factory keeps them

    base = models.load_model(prof)  # a fresh base, as the sweep loads it
    m = attach(base, ck[1], "epoch-1", identity)
    p1, _ = score_benchmark(Scorer(m, tok, pid, prof.score_batch_tokens), pairs, conts)
    m = attach(m, ck[2], "epoch-2", identity)
    detach(m, "epoch-1")
    p2_switched, c2_switched = score_benchmark(Scorer(m, tok, pid, prof.score_batch_tokens), pairs, conts)
    fresh = attach(models.load_model(prof), ck[2], "epoch-2", identity)
    p2_fresh, c2_fresh = score_benchmark(Scorer(fresh, tok, pid, prof.score_batch_tokens), pairs, conts)

    assert base_pairs[["logp_cond_good", "logp_cond_bad"]].notna().all().all() and len(base_conts) == 3
    # epoch 1's only step ran at learning rate 0 (warmup): its adapter scores exactly as the base
    pd.testing.assert_frame_equal(p1, base_pairs)
    assert (p2_switched.dI - base_pairs.dI).abs().max() > 1e-3  # epoch 2 moved the scores
    pd.testing.assert_frame_equal(p2_switched, p2_fresh)  # switching adapters = loading the adapter afresh
    pd.testing.assert_frame_equal(c2_switched, c2_fresh)


def test_trainable_count_refused_for_another_rank(paper_like, tmp_path):
    """The check at train time: a profile pinning another count stops before any training step."""
    prof = dataclasses.replace(paper_like, expected_trainable_params=80_740_352)
    with pytest.raises(RuntimeError, match="pins 80,740,352"):
        T.train(prof, models.load_model(prof), models.load_tokenizer(prof), [], [], tmp_path / "ck", progress=lambda *_: None)
    assert not T.complete_checkpoints(tmp_path / "ck")


# ------------------------------------------------------------------ device resolution and precision

def test_auto_device_follows_cuda(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    monkeypatch.setattr(device, "cuda_available", lambda: True)
    assert get_profile("cpu").device == "cuda" and get_profile("cpu", device="cpu").device == "cpu"
    assert get_profile("smoke").device == "cpu" and get_profile("smoke", device="auto").device == "cuda"
    monkeypatch.setattr(device, "cuda_available", lambda: False)
    assert get_profile("cpu").device == "cpu"
    monkeypatch.setenv(config.DEVICE_ENV, "cuda")  # what `cqa run --device cuda` sets for the notebooks
    assert get_profile("cpu").device == "cuda" and get_profile("cpu", device="cpu").device == "cpu"


def test_notebook_setup_resolves_from_its_parameters(monkeypatch, tmp_path, tiny_hub_folder):
    """A notebook's `device` and `model` parameters decide its profile; the environment fills in only when they
    are empty (a notebook opened in Jupyter), and an empty device means the profile's own."""
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    monkeypatch.setenv(config.MODEL_ENV, "Qwen/elsewhere")
    st = setup("00_test", "paper", str(tmp_path / "r1"), device="cuda", model=str(tiny_hub_folder))
    assert (st.profile.device, st.profile.model_id) == ("cuda", str(tiny_hub_folder))
    monkeypatch.delenv(config.MODEL_ENV)  # a model applies to the hub profile only
    assert setup("00_test", "smoke", str(tmp_path / "r2"), device="cuda").profile.device == "cuda"
    assert setup("00_test", "smoke", str(tmp_path / "r3")).profile.device == "cpu"  # from the environment
    monkeypatch.delenv(config.DEVICE_ENV)
    assert setup("00_test", "smoke", str(tmp_path / "r4"), device="").profile.device == "cpu"  # smoke's own
    assert setup("00_test", "paper", str(tmp_path / "r5")).profile.model_id == "Qwen/Qwen2.5-7B"


def test_paper_profile_refuses_cpu_and_unknown_devices(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    with pytest.raises(ValueError, match="CUDA GPU only"):
        get_profile("paper", device="cpu")
    with pytest.raises(ValueError, match="expected one of"):
        get_profile("cpu", device="tpu")
    assert get_profile("paper").device == "cuda"  # resolving needs no GPU (the preflight checks for one)


@pytest.mark.parametrize("name,device,native,bf16", [
    ("paper", "cuda", False, True), ("cpu", "cuda", False, True), ("smoke", "cuda", False, True),
    ("cpu", "cpu", True, True), ("cpu", "cpu", False, False), ("smoke", "cpu", True, False),
])
def test_training_precision_per_device(monkeypatch, name, device, native, bf16):
    monkeypatch.setattr("cqa_utils.method.device.cpu_has_bf16", lambda: native)
    monkeypatch.setattr(models, "accelerator_name", lambda: "Test GPU")
    prof = dataclasses.replace(config.PROFILES[name], device=device)
    assert models.train_in_bf16(prof) is bf16
    assert models.train_in_bf16(prof.with_overrides(mixed_precision="no")) is False
    what, why = deviations.precision_note(prof)
    assert what.startswith("training: bf16") if bf16 else what.startswith("fp32 training")
    assert ("Test GPU" in what) == (device == "cuda") and why

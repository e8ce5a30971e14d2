"""Training: LLaMA-Factory parity of the examples, the split, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cqa_utils.method import train as T
from cqa_utils.method.config import PAPER, get_profile
from cqa_utils.method.data import split_train_val


def test_split_matches_llama_factory():
    tr, va = split_train_val([{}] * 105, 0.1, 42)
    assert (len(tr), len(va)) == (94, 11)
    assert sorted(va) == [0, 18, 27, 33, 38, 46, 50, 56, 61, 81, 83]


def test_steps_and_warmup():
    assert T.steps_per_epoch(94, PAPER) == 47
    assert 12 * T.steps_per_epoch(94, PAPER) == 564


@pytest.mark.parametrize("src,tgt,cut,expect", [
    (100, 200, 2048, (100, 200)),      # fits: nothing cut
    (3000, 500, 2048, (1548, 500)),    # long prompt: response kept, prompt cut
    (500, 3000, 2048, (500, 1548)),    # long response, short prompt
    (3000, 3000, 2048, (1024, 1024)),  # both long: proportional
])
def test_infer_seqlen(src, tgt, cut, expect):
    assert T.infer_seqlen(src, tgt, cut) == expect


def test_default_template_masks_prompt(smoke):
    _, tok, _, _ = smoke
    row = {"instruction": "Judge.", "input": "The scene.", "output": "Choose B."}
    src, tgt = T.template_ids(tok, row, "default")
    eos = tok.eos_token_id
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    assert src == enc("Human: Judge.\nThe scene.") + [eos] + enc("\nAssistant:")
    assert tgt == enc("Choose B.") + [eos] + enc("\n")
    ex = T.build_example(tok, row, "default", 2048)
    assert ex["labels"][: len(src)] == [-100] * len(src) and ex["labels"][len(src):] == tgt
    assert T.template_ids(tok, row, "empty") == (enc("Judge.\nThe scene."), enc("Choose B."))
    with pytest.raises(ValueError, match="unknown template"):
        T.template_ids(tok, row, "alpaca-ish")


def test_paper_lora_parameter_count():
    trainable, total = T.qwen25_7b_trainable()  # peft's own count on the meta device
    assert trainable == 80_740_352
    assert trainable / total == pytest.approx(0.01049, abs=5e-5)
    assert T.lora_trainable_count(T.QWEN25_7B, PAPER) == trainable  # the count from the config alone


def test_trainable_count_from_config_matches_peft_on_other_shapes():
    """The config formula against peft's count on models of other shapes (no GQA, GQA, explicit head_dim)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    for cfg in (Qwen2Config(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                            num_key_value_heads=4),
                LlamaConfig(vocab_size=100, hidden_size=96, intermediate_size=160, num_hidden_layers=2, num_attention_heads=6,
                            num_key_value_heads=2, head_dim=24)):
        for hp in (PAPER, dataclasses.replace(PAPER, lora_rank=8, lora_targets=("q_proj", "down_proj"))):
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(cfg)
            assert T.lora_trainable_count(cfg, hp) == get_peft_model(model, T.lora_config(hp)).get_nb_trainable_parameters()[0]


def test_trainable_check_refuses_a_wrong_count():
    prof = get_profile("paper")
    T.check_trainable(prof, T.QWEN25_7B, 80_740_352)  # pass
    with pytest.raises(RuntimeError, match="80,740,352"):
        T.check_trainable(prof, T.QWEN25_7B, 80_740_353)
    with pytest.raises(RuntimeError, match="pins 1"):  # the config agrees but the pinned count does not
        T.check_trainable(dataclasses.replace(prof, expected_trainable_params=1), T.QWEN25_7B, 80_740_352)


def test_progress_clock_text():
    assert [T.clock_text(s) for s in (0, 45.4, 245, 3599, 3600, 7385)] == ["0s", "45s", "4m05s", "59m59s", "1h00m", "2h03m"]


def test_sft_config_reproduces_section_3_4(tmp_path):
    # the paper profile's config needs a GPU for bf16; the cpu profile carries the same hyperparameters
    cpu = get_profile("cpu", device="cpu")
    cfg = T.sft_config(cpu, tmp_path)
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (2e-4, 12, 1, 2)
    assert (cfg.lr_scheduler_type.value if hasattr(cfg.lr_scheduler_type, "value") else cfg.lr_scheduler_type) == "cosine"
    assert cfg.warmup_steps == 0.1 and cfg.neftune_noise_alpha == 5.0 and cfg.pad_to_multiple_of == 8
    assert cfg.per_device_eval_batch_size == 1 and cfg.bf16 == T.uses_bf16(cpu) and not cfg.load_best_model_at_end
    assert T.uses_bf16(cpu) == T.cpu_has_bf16() and not T.uses_bf16(get_profile("smoke"))
    assert get_profile("paper").dtype == "bfloat16" and PAPER.mixed_precision == "bf16"
    assert not cfg.gradient_checkpointing and cfg.save_strategy == "epoch" and cfg.eval_strategy == "epoch" and cfg.seed == 42
    assert str(cfg.optim.value if hasattr(cfg.optim, "value") else cfg.optim) == "adamw_torch"
    lc = T.lora_config(PAPER)
    assert (lc.r, lc.lora_alpha, lc.lora_dropout, lc.use_rslora) == (32, 32, 0.05, True)
    assert set(lc.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _rows(n):
    return [{"id": f"r{i}", "instruction": "Judge the scene.", "input": f"Scene {i}: Nessa waits by the pier.",
             "output": f"At first I leaned to A, but the reader needs the delay; so option B ({i})."} for i in range(n)]


def test_training_writes_one_checkpoint_and_eval_per_epoch(tmp_path, smoke):
    from cqa_utils.method.models import load_model

    prof = get_profile("smoke").with_overrides(num_train_epochs=3)
    rows = _rows(10)
    s = T.train(prof, load_model(prof), smoke[1], rows[:8], rows[8:], tmp_path / "ck", progress=lambda *_: None)
    ck = T.complete_checkpoints(tmp_path / "ck")
    assert sorted(ck) == [1, 2, 3]
    assert [c.name for c in ck.values()] == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]
    assert [e["epoch"] for e in s["epochs"]] == [1, 2, 3] and all(e["eval_loss"] > 0 for e in s["epochs"])
    assert sum("eval_loss" in h for h in s["log_history"]) == 3
    for c in ck.values():
        assert json.loads((c / "cqa_base.json").read_text())["base"]["model_type"] == "qwen2"


def test_incomplete_checkpoint_is_set_aside_and_resumed(tmp_path, smoke):
    from cqa_utils.method.models import load_model

    prof = get_profile("smoke").with_overrides(num_train_epochs=2)
    rows = _rows(10)
    out = tmp_path / "ck"
    T.train(prof, load_model(prof), smoke[1], rows[:8], rows[8:], out, progress=lambda *_: None)
    (out / "checkpoint-8" / T.COMPLETE_MARKER).unlink()  # as if killed while saving epoch 2
    msgs: list[str] = []
    s = T.train(prof, load_model(prof), smoke[1], rows[:8], rows[8:], out, progress=msgs.append)
    assert s["resumed_from"] == 1 and any("resuming from epoch 1" in m for m in msgs)
    assert any(p.name.startswith("incomplete-checkpoint-8") for p in Path(out).iterdir())
    assert sorted(T.complete_checkpoints(out)) == [1, 2]


def test_fast_path_loss_equals_trl_loss(smoke):
    """Our loss (label-position head, padding mask dropped) equals trl's on the same padded batch, in fp32."""
    import torch

    from cqa_utils.method.models import load_model

    prof = get_profile("smoke")
    model = load_model(prof)
    model.train()
    tok = smoke[1]
    exs = [T.build_example(tok, r, prof.hparams.template, prof.hparams.cutoff_len) for r in _rows(2)]
    width = -(-max(len(e["input_ids"]) for e in exs) // 8) * 8
    ids = torch.full((2, width), tok.pad_token_id or 0)
    labels = torch.full((2, width), -100)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, e in enumerate(exs):
        n = len(e["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        trainer = object.__new__(T.fast_trainer_class())
        trainer.args = type("A", (), {"bf16": False})()
        ours = trainer.compute_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)

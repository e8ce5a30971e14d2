"""The `hparams` channel: §3.4 settings changed for one run, checked, shown as deviations, keyed."""

from __future__ import annotations

import dataclasses

import pytest

from cqa_utils.method import config, deviations
from cqa_utils.method.config import PAPER, PROFILES, DataPaths, get_profile


def test_an_override_changes_the_run_not_the_reference():
    prof = get_profile("smoke", hparams={"lora_rank": 16, "learning_rate": 1e-4, "lora_targets": ["q_proj", "v_proj"]})
    assert (prof.hparams.lora_rank, prof.hparams.learning_rate, prof.hparams.lora_targets) == (16, 1e-4, ("q_proj", "v_proj"))
    assert dict(prof.run_hparams) == {"learning_rate": 1e-4, "lora_rank": 16, "lora_targets": ("q_proj", "v_proj")}
    assert PAPER.lora_rank == 32 and config.PaperHParams().lora_rank == 32  # the paper's values stay frozen
    assert get_profile("smoke").run_hparams == () and get_profile("smoke", hparams={}) == get_profile("smoke")
    assert get_profile("smoke", hparams={"learning_rate": 1}).hparams.learning_rate == 1.0  # an int where a float goes


@pytest.mark.parametrize("bad,message", [
    ({"lora_rnak": 16}, "unknown setting 'lora_rnak'; the §3.4 settings are cutoff_len, "),
    ({"lora_rank": "16"}, "lora_rank expects int (the paper's value is 32), got str '16'"),
    ({"lora_rank": 16.5}, "lora_rank expects int"),
    ({"use_rslora": 1}, "use_rslora expects bool"),
    ({"lora_rank": True}, "lora_rank expects int"),
    ({"lora_targets": "q_proj"}, "lora_targets expects a non-empty list of strings"),
])
def test_bad_overrides_are_refused_by_name_and_type(bad, message):
    with pytest.raises(ValueError, match="hparams: " + message.replace("(", r"\(").replace(")", r"\)")):
        get_profile("smoke", hparams=bad)


def test_override_is_a_deviation_set_for_this_run():
    prof = get_profile("smoke", hparams={"lora_rank": 16})
    rows = {r["what"]: r for r in deviations.deviations(prof, DataPaths())}
    assert rows["lora_rank"]["paper"] == "32" and rows["lora_rank"]["this run"] == "16"
    assert rows["lora_rank"]["why"].startswith("set for this run")
    assert "lora_rank" not in {r["what"] for r in deviations.deviations(get_profile("smoke"), DataPaths())}


def test_paper_profiles_pinned_count_follows_the_chosen_rank_and_targets():
    paper = PROFILES["paper"]
    assert paper.with_run_hparams({"lora_rank": 16}).expected_trainable_params == 80_740_352 // 2  # linear in r
    # q and v only: 28 layers · 16 · ((3584 + 3584) + (3584 + 512)) by hand
    qv = paper.with_run_hparams({"lora_rank": 16, "lora_targets": ["q_proj", "v_proj"]})
    assert qv.expected_trainable_params == 28 * 16 * (3584 + 3584 + 3584 + 512)
    assert paper.with_run_hparams({"learning_rate": 1e-4}).expected_trainable_params == 80_740_352


def test_the_pinned_count_agrees_with_peft_for_a_changed_rank():
    from cqa_utils.method import train as T

    prof = PROFILES["paper"].with_run_hparams({"lora_rank": 8})
    trainable, _ = T.qwen25_7b_trainable(8)  # peft itself, on the meta device
    T.check_trainable(prof, T.QWEN25_7B, trainable)  # the check follows the settings: no refusal
    with pytest.raises(RuntimeError):
        T.check_trainable(dataclasses.replace(prof, expected_trainable_params=80_740_352), T.QWEN25_7B, trainable)


def test_hparams_reach_the_step_keys():
    from cqa_utils.pipeline import keys

    assert keys.key_of(get_profile("smoke")) != keys.key_of(get_profile("smoke", hparams={"lora_rank": 16}))


def test_cli_refuses_a_bad_override_before_anything_runs(tmp_path, capsys):
    from cqa_utils.cli import main

    rc = main(["run", "--profile", "smoke", "--run-dir", str(tmp_path / "r"), "--dry-run", "-p", 'hparams={"lora_rnak": 16}'])
    assert rc == 2 and "unknown setting 'lora_rnak'" in capsys.readouterr().err and not (tmp_path / "r").exists()

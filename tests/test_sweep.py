"""Epoch sweep: adapters merged while scoring leave the base bit-exact and score like the unmerged forward."""

from __future__ import annotations

import numpy as np
import torch

from cqa_utils.method.scoring import Scorer
from cqa_utils.method.sweep import attach, detach, each_adapter, merged, score_benchmark, score_epochs

ROWS = [{"id": f"p{i}", "domain": "literary", "context": c, "good": g, "bad": b} for i, (c, g, b) in enumerate([
    ("Nessa opened the door and looked at the rain.", "It fell softly on the step.", "It was a lovely day, she said."),
    ("The harbour was quiet that night, and", "the boats knocked together.", "the boats sang an anthem."),
])]
CONTS = [{"id": "c0", "domain": "news", "context": "The council met on Tuesday.", "passage": "It voted to close the pier."}]


def _adapter(tmp_path, seed: int):
    from bench.bench import _fake_adapters

    torch.manual_seed(seed)
    return _fake_adapters("smoke", 2, tmp_path / f"a{seed}")


def test_merged_scoring_matches_unmerged_and_restores_the_base(tmp_path, smoke):
    from cqa_utils.method.models import load_model, model_identity

    prof, tok, _, pid = smoke
    base = load_model(prof)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    paths = _adapter(tmp_path, 0)
    m = attach(base, paths[0], "a0", model_identity(base))
    sc = Scorer(m, tok, pid)
    p_merged, c_merged = score_benchmark(sc, ROWS, CONTS, merge=True)
    p_plain, c_plain = score_benchmark(sc, ROWS, CONTS, merge=False)
    np.testing.assert_allclose(p_merged.dI, p_plain.dI, atol=1e-4)
    np.testing.assert_allclose(c_merged.logp, c_plain.logp, atol=1e-4)
    assert not np.allclose(p_plain.dI, score_benchmark(sc.with_model(load_model(prof)), ROWS, [])[0].dI, atol=1e-6)  # the adapter matters
    m = attach(m, paths[1], "a1", model_identity(base))
    detach(m, "a0")
    with merged(m) as did:
        assert did
    compared = 0
    for n, p in m.get_base_model().named_parameters():  # every base weight is back, bit for bit
        key = n.replace(".base_layer", "")
        if key in before:
            assert torch.equal(p, before[key]), n
            compared += 1
    assert compared >= len(before) - 1, (compared, len(before))  # the loop really compared the base weights


def test_bf16_weights_are_never_merged(smoke):
    from peft import get_peft_model

    from cqa_utils.method.models import load_model
    from cqa_utils.method.train import lora_config

    prof = smoke[0]
    pm = get_peft_model(load_model(prof).to(torch.bfloat16), lora_config(prof.hparams))
    with merged(pm) as did:
        assert not did


def test_switching_adapters_scores_as_a_fresh_load(tmp_path, smoke):
    """each_adapter on one base gives the scores of base + adapter loaded afresh, and leaves no adapter behind."""
    from cqa_utils.method.models import load_model, model_identity

    prof, tok, _, pid = smoke
    paths = _adapter(tmp_path, 1)
    base = load_model(prof)
    ident = model_identity(base)
    switched = {n: score_benchmark(s, ROWS, CONTS, merge=False) for n, s in each_adapter(Scorer(base, tok), list(zip("ab", paths)), ident)}
    for name, path in zip("ab", paths):
        fresh = Scorer(attach(load_model(prof), path, "x", ident), tok, pid)
        p, c = score_benchmark(fresh, ROWS, CONTS, merge=False)
        assert p.equals(switched[name][0]) and c.equals(switched[name][1])
    assert not np.allclose(switched["a"][0].dI, switched["b"][0].dI)


def test_score_epochs_labels_and_refuses_missing_checkpoints(tmp_path, smoke):
    import pytest

    from cqa_utils.method.models import load_model, model_identity

    prof, tok, _, _ = smoke
    paths = _adapter(tmp_path, 2)
    sc = Scorer(load_model(prof), tok)
    pairs, conts, times = score_epochs(sc, ROWS, CONTS, {1: paths[0], 2: paths[1]}, [2], model_identity(sc.model),
                                       progress=lambda *_: None)
    assert sorted(set(zip(pairs.model, pairs.epoch))) == [("base", 0), ("epoch-2", 2)] and list(times.epoch) == [0, 2]
    assert len(conts) == 2 * len(CONTS)
    with pytest.raises(FileNotFoundError, match="epoch"):
        score_epochs(sc, ROWS, CONTS, {1: paths[0]}, [3], model_identity(sc.model))

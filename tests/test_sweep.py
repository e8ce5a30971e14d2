"""Epoch sweep: adapters merged while scoring leave the base bit-exact and score like the unmerged forward."""

from __future__ import annotations

import numpy as np
import torch

from cqa_utils.sweep import attach, detach, merged, score_benchmark

ROWS = [{"id": f"p{i}", "domain": "literary", "context": c, "good": g, "bad": b} for i, (c, g, b) in enumerate([
    ("Nessa opened the door and looked at the rain.", "It fell softly on the step.", "It was a lovely day, she said."),
    ("The harbour was quiet that night, and", "the boats knocked together.", "the boats sang an anthem."),
])]
CONTS = [{"id": "c0", "domain": "news", "context": "The council met on Tuesday.", "passage": "It voted to close the pier."}]


def _adapter(tmp_path, seed: int):
    from cqa_utils.bench import _fake_adapters

    torch.manual_seed(seed)
    return _fake_adapters("smoke", 2, tmp_path / f"a{seed}")


def test_merged_scoring_matches_unmerged_and_restores_the_base(tmp_path, smoke):
    from cqa_utils.models import load_model, model_identity

    prof, tok, _, pid = smoke
    base = load_model(prof)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    paths = _adapter(tmp_path, 0)
    m = attach(base, paths[0], "a0", model_identity(base))
    p_merged, c_merged = score_benchmark(m, tok, pid, ROWS, CONTS, merge=True)
    p_plain, c_plain = score_benchmark(m, tok, pid, ROWS, CONTS, merge=False)
    np.testing.assert_allclose(p_merged.dI, p_plain.dI, atol=1e-4)
    np.testing.assert_allclose(c_merged.logp, c_plain.logp, atol=1e-4)
    assert not np.allclose(p_plain.dI, score_benchmark(load_model(prof), tok, pid, ROWS, [])[0].dI, atol=1e-6)  # the adapter matters
    m = attach(m, paths[1], "a1", model_identity(base))
    detach(m, "a0")
    with merged(m) as did:
        assert did
    for n, p in m.get_base_model().named_parameters():  # every base weight is back, bit for bit
        key = n.replace(".base_layer", "")
        if key in before:
            assert torch.equal(p, before[key]), n


def test_bf16_weights_are_never_merged(smoke):
    from peft import get_peft_model

    from cqa_utils.models import load_model
    from cqa_utils.train import lora_config

    prof = smoke[0]
    pm = get_peft_model(load_model(prof).to(torch.bfloat16), lora_config(prof.hparams))
    with merged(pm) as did:
        assert not did

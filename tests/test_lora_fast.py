"""The training step's speed levers keep its meaning: dropout distribution, padding mask, loss."""

from __future__ import annotations

import pytest
import torch

from cqa_utils.method.lora_fast import BernoulliDropout, prepare_lora, right_padded


def test_bernoulli_dropout_rate_scale_and_independence():
    torch.manual_seed(0)
    d = BernoulliDropout(0.05).train()
    x = torch.ones(400, 1000)
    y = d(x)
    dropped = (y == 0).float()
    n = dropped.numel()
    se = (0.05 * 0.95 / n) ** 0.5
    assert abs(dropped.mean().item() - 0.05) < 5 * se  # rate p (5 standard errors)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.95))  # inverted-dropout scale
    a, b = dropped.flatten()[:-1], dropped.flatten()[1:]
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.01  # neighbours independent
    first, last = dropped[:, 0].mean().item(), dropped[:, -1].mean().item()  # no edge effect along the flat order
    assert abs(first - 0.05) < 0.035 and abs(last - 0.05) < 0.035


def test_bernoulli_dropout_eval_identity_and_gradient():
    d = BernoulliDropout(0.3)
    x = torch.randn(7, 9, requires_grad=True)
    assert d.eval()(x) is x
    d.train()
    y = d(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / 0.7)  # gradient flows through kept entries only
    assert BernoulliDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        BernoulliDropout(1.0)


def test_right_padded():
    assert right_padded(None)
    assert right_padded(torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    assert not right_padded(torch.tensor([[0, 0, 1, 1, 1]]))  # left padding keeps its mask
    assert not right_padded(torch.tensor([[1, 0, 1, 1, 0]]))


def test_dropping_a_right_padding_mask_changes_no_real_position(smoke):
    _, _, model, _ = smoke
    ids = torch.randint(5, 200, (2, 13))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0  # row 0 right-padded to the batch length
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).logits
        b = model(input_ids=ids).logits
    assert torch.allclose(a[0, :9], b[0, :9], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_prepare_lora_swaps_every_dropout(smoke):
    from peft import get_peft_model

    from cqa_utils.method.config import get_profile
    from cqa_utils.method.models import load_model
    from cqa_utils.method.train import lora_config

    prof = get_profile("smoke")
    pm = get_peft_model(load_model(prof), lora_config(prof.hparams))
    n = prepare_lora(pm)
    assert n == 7 * pm.config.num_hidden_layers  # the 7 projections of every layer
    drops = [m for m in pm.modules() if isinstance(m, torch.nn.Dropout)]
    mine = [m for m in pm.modules() if isinstance(m, BernoulliDropout)]
    assert not drops and len(mine) == n and all(m.p == prof.hparams.lora_dropout for m in mine)

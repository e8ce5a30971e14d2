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


def _one_step_grads(prof, fuse: bool, seed: int = 3):
    """Loss and LoRA gradients of one training step (our loss, dropout on) on a fixed smoke batch."""
    from cqa_utils.method.models import load_model
    from cqa_utils.method.train import label_position_loss, lora_model

    base = load_model(prof)
    torch.manual_seed(0)  # the same LoRA initialisation for both paths
    pm = lora_model(base, prof, fuse_lora=fuse)
    for n, p in pm.named_parameters():  # lora_B starts at zero; give it weights so A's gradient is not zero too
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    pm.train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 200, (1, 40), generator=g)
    labels = ids.clone()
    labels[:, :15] = -100
    torch.manual_seed(seed)  # the dropout masks: both paths draw them in the same order
    loss = label_position_loss(pm, {"input_ids": ids, "labels": labels}, False)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in pm.named_parameters() if p.requires_grad}


def test_fused_lora_step_equals_peft_forward(smoke):
    """One step with the fused LoRA forward gives peft's loss and LoRA gradients (same dropout masks), in fp32."""
    from cqa_utils.method.config import get_profile

    prof = get_profile("smoke")
    loss_ref, g_ref = _one_step_grads(prof, fuse=False)
    loss, g = _one_step_grads(prof, fuse=True)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert g.keys() == g_ref.keys() and len(g) == 2 * 7 * 2  # A and B of 7 projections in each of the 2 layers
    for n in g:
        assert torch.allclose(g[n], g_ref[n], rtol=1e-4, atol=1e-7), n
    _, g_other = _one_step_grads(prof, fuse=True, seed=4)  # other dropout masks: the comparison can fail
    assert not all(torch.allclose(g[n], g_other[n], rtol=1e-4, atol=1e-7) for n in g)


def test_fused_lora_forward_by_hand():
    """Without dropout the fused forward is W x + s · B A x (s = alpha / sqrt(r), rsLoRA), computed here by hand."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5, bias=False))
    pm = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["0"], lora_dropout=0.5))
    prepare_lora(pm, fuse=True)
    layer = pm.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, 6)
    w, a, b = net[0].base_layer.weight, layer.lora_A["default"].weight, layer.lora_B["default"].weight
    pm.eval()
    assert torch.allclose(pm(x), x @ w.T + (8 / 4 ** 0.5) * (x @ a.T @ b.T), atol=1e-6)
    pm.train()  # dropout 0.5 on: kept inputs scaled by 2, the same mask as BernoulliDropout draws
    torch.manual_seed(5)
    y = pm(x)
    torch.manual_seed(5)
    keep = BernoulliDropout(0.5).train()(torch.ones(3, 6))
    assert torch.allclose(y, x @ w.T + (8 / 4 ** 0.5) * ((x * keep) @ a.T @ b.T), atol=1e-6)


def test_optimised_training_equals_reference_path_per_epoch(tmp_path, smoke):
    """The smoke profile's per-epoch train and eval losses with the fused LoRA forward equal peft's (same seed)."""
    from cqa_utils.method.config import get_profile
    from cqa_utils.method.models import load_model
    from cqa_utils.method.train import train

    prof = get_profile("smoke").with_overrides(num_train_epochs=2)
    rows = [{"id": f"r{i}", "instruction": "Judge the scene.", "input": f"Scene {i}: the pier at dusk.",
             "output": f"Option {'AB'[i % 2]}: the delay carries the reveal ({i})."} for i in range(10)]
    runs = [train(prof, load_model(prof), smoke[1], rows[:8], rows[8:], tmp_path / str(f), resume=False,
                  progress=lambda *_: None, fuse_lora=f)["epochs"] for f in (False, True)]
    for ref, ours in zip(*runs):
        assert ours["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4)
        assert ours["eval_loss"] == pytest.approx(ref["eval_loss"], rel=1e-4)
    assert runs[0][0]["train_loss"] != pytest.approx(runs[0][1]["train_loss"], rel=1e-4)  # it trains: epochs differ

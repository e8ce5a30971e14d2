"""Speed levers for the LoRA training step that leave the optimisation problem unchanged.

Measured on the ``cpu`` profile (bench/README.md), one 642-token step took 2.05 s. Three costs stood out:
peft's LoRA dropout (210 ``bernoulli_`` calls, 20 % of the step), the CPU flash-attention backward (29 %),
and casts between fp32 and bf16. The levers here:

* :class:`BernoulliDropout` gives the same i.i.d. Bernoulli(p) mask as ``nn.Dropout``, with kept entries
  scaled by 1/(1-p). It draws only the *dropped* positions (geometric gaps between them), so it needs
  about p·n random numbers instead of n. The mask's distribution is the same; the random stream is not.
* :func:`prepare_lora` swaps it into every LoRA layer. It also turns off peft's input cast to the fp32
  adapter dtype: under bf16 autocast that cast is undone straight away, and the round trip is exact.
* :func:`fused_lora_forward` (installed by :func:`prepare_lora`) applies dropout's 1/(1-p) and the LoRA
  scale on the rank-r product instead of on activation-sized tensors: two fewer full passes per LoRA layer
  forward and two backward, 210 layers a step on SmolLM2; about 8 % of a bf16 step on 2 AVX512-BF16 cores
  (``bench/train_step.py``). Same loss and gradients up to rounding (``tests/test_lora_fast.py``), but in bf16
  that rounding compounds: after 2 epochs on 16 rows the per-epoch losses stayed within 0.05 % of peft's
  forward while ΔI moved by up to 0.26 bits per benchmark pair (``bench/results/vm-20261204-0811.json``), far
  beyond the 1e-3-bit agreement goal. It is therefore opt-in (``fuse=True``; ``train(fuse_lora=True)``).
* :func:`right_padded` shows when the attention mask can be dropped. With right padding, a causal LM's
  real positions never attend to the padding after them, so their outputs and the loss are the same
  without the mask. The padded length, which NEFTune's noise scale depends on, is unchanged.
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class BernoulliDropout(nn.Module):
    """Inverted dropout with an i.i.d. Bernoulli(p) drop mask, sampled by its gaps (cheap for small p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), found {p}")
        self.p = float(p)

    def drop_positions(self, n: int, device: torch.device) -> torch.Tensor:
        """Flat indices of dropped entries among n: cumulative sums of Geometric(p) gaps, kept while < n."""
        p = self.p
        chunk = int(n * p + 8 * math.sqrt(n * p * (1 - p)) + 32)
        pos = torch.cumsum(torch.empty(chunk, dtype=torch.float64, device=device).geometric_(p), 0)
        while pos[-1] <= n:  # rare: more drops than the 8-sigma allowance
            more = torch.cumsum(torch.empty(chunk, dtype=torch.float64, device=device).geometric_(p), 0)
            pos = torch.cat([pos, pos[-1] + more])
        return (pos[pos <= n] - 1).long()

    def zero_dropped(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the dropped entries zeroed and the kept ones *not* rescaled (the caller folds 1/(1-p) in)."""
        flat = x.reshape(-1)
        return flat.index_fill(0, self.drop_positions(flat.numel(), x.device), 0).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return self.zero_dropped(x * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def fused_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's LoRA ``Linear.forward`` for plain LoRA in training, with the scalars moved onto the rank-r product.

    peft computes ``base(x) + B(A(dropout(x))) · s`` with dropout scaling its input by 1/(1-p): two passes
    over activation-sized tensors per layer, and their two passes again in backward. Here the dropped entries
    are zeroed (one pass) and ``s/(1-p)`` multiplies ``A x`` (rank 32, not the layer's width). The product is the
    same up to the rounding of where the scalar is applied. Anything else (merged, adapters disabled, mixed
    batches, LoRA variants, dropout that is not :class:`BernoulliDropout`) goes to peft's own forward.
    """
    if (args or kwargs or self.disable_adapters or self.merged or self.lora_variant
            or not all(isinstance(self.lora_dropout[a], BernoulliDropout) for a in self.active_adapters if a in self.lora_A)):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    for name in self.active_adapters:
        if name not in self.lora_A:
            continue
        drop, s = self.lora_dropout[name], self.scaling[name]
        if drop.training and drop.p > 0:
            x_in, s = drop.zero_dropped(x), s / (1.0 - drop.p)
        else:
            x_in = x
        result = result + F.linear(F.linear(x_in, self.lora_A[name].weight) * s, self.lora_B[name].weight)
    return result


def prepare_lora(peft_model: Any, fuse: bool = False) -> int:
    """Use :class:`BernoulliDropout` and no input cast in every LoRA layer, and with ``fuse``
    :func:`fused_lora_forward` as its forward; returns the layers changed."""
    n = 0
    for mod in peft_model.modules():
        drops = getattr(mod, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for name, d in list(drops.items()):
                if isinstance(d, nn.Dropout):
                    drops[name] = BernoulliDropout(d.p)
            mod.cast_input_dtype_enabled = False
            if fuse:
                mod.forward = types.MethodType(fused_lora_forward, mod)
            elif "forward" in mod.__dict__:
                del mod.forward
            n += 1
    return n


def right_padded(mask: torch.Tensor | None) -> bool:
    """True when every row of an attention mask is ones followed only by zeros (or there is no mask)."""
    if mask is None:
        return True
    m = mask.to(torch.int64)
    return bool((m[:, 1:] <= m[:, :-1]).all())

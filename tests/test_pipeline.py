"""The whole papermill pipeline on the smoke profile: end to end, the book, caching, resume, determinism.

Runs on a cut-down copy of the stand-in (24 training rows, 4+4 pairs, 3+3+3 passages) so the suite
stays fast; the full stand-in is exercised by the main job (`make all`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cqa_utils.method.config import REPO_ROOT
from cqa_utils.method.train import complete_checkpoints
from cqa_utils.pipeline.run import NOTEBOOKS, RESOLVED, run_pipeline
from tests.conftest import read_rows, small_data, write_rows

pytestmark = pytest.mark.pipeline


def _run(run_dir: Path, data: Path) -> dict:
    return run_pipeline("smoke", run_dir, str(data), log=lambda *_: None, book_root=None)


def _reused(manifest: dict) -> dict[str, bool]:
    return {s["step"]: s["reused"] for s in manifest["steps"]}


STEPS = {"prescreen", "train-cot", "train-no-reasoning", "sweep-cot", "sweep-no-reasoning", "train-control", "sweep-control",
         "sweep-cot-all", "sweep-cot-calibration", "train-scale-10", "sweep-scale-10",
         *(f"{k}-cot-seed{s}" for k in ("train", "sweep") for s in (43, 44)),
         *(f"{k}-control-{sig}-f{f}" for k in ("train", "sweep") for sig in ("good", "bad") for f in (0, 1))}
OPTIONAL = ("train-control-cot", "sweep-control-cot", "train-control-neutral", "sweep-control-neutral")  # when their files exist


def _steps(manifest: dict) -> set[str]:
    return {s for s in _reused(manifest) if not s.startswith(OPTIONAL)}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    data = small_data(root / "data")
    t0 = time.perf_counter()
    manifest = _run(root / "run", data)
    return root, data, manifest, time.perf_counter() - t0


def test_end_to_end(base_run):
    root, _, m, _ = base_run
    run = root / "run"
    assert [s["notebook"] for s in m["notebooks"]] == list(NOTEBOOKS)
    for n in NOTEBOOKS:
        nb = json.loads((run / "executed" / f"{n}.ipynb").read_text())
        assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    t1 = pd.read_csv(run / "artifacts" / "05_delta_delta_i" / "table1.csv")
    assert sorted(t1.epoch.unique()) == [2, 3, 4, 5, 6, 8, 12] and set(t1.domain) == {"literary", "factual"}
    t2 = pd.read_csv(run / "artifacts" / "06_delta_logp" / "table2.csv")
    assert list(t2.domain) == ["literary", "news", "popsci", "factual combined"]
    claims = pd.read_csv(run / "artifacts" / "10_claims" / "claims.csv")
    assert len(claims) >= 10 and claims.verdict.notna().all()
    assert sorted(complete_checkpoints(run / "steps" / "train-cot" / "checkpoints")) == list(range(1, 13))
    assert sorted(complete_checkpoints(run / "steps" / "train-no-reasoning" / "checkpoints")) == [1, 2, 3, 4, 5]
    assert _steps(m) == STEPS and not any(_reused(m).values())


def test_every_notebook_receives_the_resolved_profile_device_and_model(base_run):
    """`cqa run` resolves profile, run directory, data, device and model once and passes them as parameters:
    each executed notebook's injected-parameters cell records them (read here with papermill's own parser)."""
    root, data, _, _ = base_run
    for n in NOTEBOOKS:
        nb = json.loads((root / "run" / "executed" / f"{n}.ipynb").read_text())
        injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(injected) == 1, n
        values = {}
        exec("".join(injected[0]["source"]), {}, values)  # the cell is plain assignments of literals
        assert {k: values[k] for k in RESOLVED} == {"profile": "smoke", "run_dir": str((root / "run").resolve()),
                                                    "data_dir": str(data.resolve()), "device": "cpu", "model": ""}, n


def test_book_builds_with_figures(base_run, tmp_path):
    from cqa_utils.pipeline.run import publish
    from cqa_utils.report.book import build, copy_sources

    root, _, _, _ = base_run
    copy_sources(tmp_path)
    publish(root / "run", tmp_path)
    html = build(strict=True, log=lambda *_: None, root=tmp_path)
    for page in ("criteria", "deviations", "10_claims", "reproducibility"):
        assert (html / "book" / "run" / f"{page}.html").exists(), page
    from tests.test_book_report import notebook_problems  # the report's content checks on freshly executed notebooks

    assert [p for n in NOTEBOOKS for p in notebook_problems(root / "run" / "executed" / f"{n}.ipynb")] == []
    from cqa_utils.report.browser_check import check

    if os.environ.get("CQA_SKIP_BROWSER") or not any(Path(p, "chromium").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("chromium not installed: in-browser figure check skipped (static check passed)")
    assert check(html) == []


def test_rerun_reuses_every_step(base_run):
    root, data, _, _ = base_run
    m = _run(root / "run", data)
    assert _steps(m) == STEPS and all(_reused(m).values()), _reused(m)


def test_a_notebook_edited_by_hand_takes_effect_on_the_next_run(base_run, tmp_path, monkeypatch):
    """Notebooks are re-executed on every run, so an edited cell shows up without any cache to clear."""
    import shutil

    from cqa_utils.pipeline import run as run_mod

    root, data, _, _ = base_run
    nbs = tmp_path / "notebooks"
    shutil.copytree(run_mod.NOTEBOOK_DIR, nbs)
    nb = json.loads((nbs / "05_delta_delta_i.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": ["print('edited by a student:', round(float(items.ddI.median()), 6))"]})
    (nbs / "05_delta_delta_i.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(run_mod, "NOTEBOOK_DIR", nbs)
    m = run_pipeline("smoke", root / "run", str(data), log=lambda *_: None, book_root=None, only=["05_delta_delta_i"])
    out = json.loads((root / "run" / "executed" / "05_delta_delta_i.ipynb").read_text())
    assert any("edited by a student" in "".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert [n["notebook"] for n in m["notebooks"]] == list(NOTEBOOKS)  # the others keep their last timings


def test_editing_a_benchmark_item_reruns_what_scores_it(base_run):
    """The adapters score the benchmark while they train (§6.6), outside the training steps' keys: an edited item
    re-runs only the sweeps, which find the live scores stale and score the saved checkpoints instead; training,
    the prescreen and the controls are reused."""
    root, data, _, _ = base_run
    pairs = read_rows(data / "benchmark" / "pairs.jsonl")
    pairs[0]["good"] = pairs[0]["good"] + " She said nothing more."
    write_rows(data / "benchmark" / "pairs.jsonl", pairs)
    before = (root / "run" / "artifacts" / "04_epoch_sweep" / "pair_scores.parquet").read_bytes()
    m = _run(root / "run", data)
    r = _reused(m)
    assert r["prescreen"] and r["train-control"] and r["sweep-control"], r
    assert r["train-cot"] and r["train-no-reasoning"] and r["train-scale-10"], r
    assert not r["sweep-cot"] and not r["sweep-no-reasoning"] and not r["sweep-scale-10"], r
    assert (root / "run" / "artifacts" / "04_epoch_sweep" / "pair_scores.parquet").read_bytes() != before


def test_killed_training_resumes_and_matches_uninterrupted_run(base_run, tmp_path):
    root, base_data, _, _ = base_run
    data = small_data(tmp_path / "data")  # the original (unedited) data of base_run
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cqa_utils", "run", "--profile", "smoke", "--run-dir", str(run), "--data-dir", str(data), "--no-publish",
           "--only", "01_data", "02_kl_prescreen", "03_train", "04_epoch_sweep"]  # what training and scoring need
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        ck = run / "steps" / "train-cot" / "checkpoints"
        if ck.exists() and len(complete_checkpoints(ck)) >= 3:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(complete_checkpoints(run / "steps" / "train-cot" / "checkpoints"))
    assert 3 <= len(done) < 12, done
    assert subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True).returncode == 0
    ref = root / "run" / "artifacts"
    # the resumed run reproduces the uninterrupted one (training is bitwise deterministic on CPU here)
    e1 = pd.read_csv(ref / "03_train" / "epochs.csv")
    e2 = pd.read_csv(run / "artifacts" / "03_train" / "epochs.csv")
    pd.testing.assert_frame_equal(e1[["epoch", "train_loss", "eval_loss"]], e2[["epoch", "train_loss", "eval_loss"]], rtol=0, atol=1e-6)
    summ = json.loads((run / "steps" / "train-cot" / "summary.json").read_text())
    assert summ["resumed_from"] == done[-1]
    # and the scores of the resumed run equal the uninterrupted run's (determinism of training and scoring)
    a = pd.read_parquet(run / "artifacts" / "04_epoch_sweep" / "pair_scores.parquet")
    b = pd.read_parquet(ref / "04_epoch_sweep" / "pair_scores.parquet")
    keep = sorted(set(a.id) - {read_rows(base_data / "benchmark" / "pairs.jsonl")[0]["id"]})  # edited by another test
    num = ["logp_cond_good", "logp_uncond_good", "logp_cond_bad", "logp_uncond_bad"]
    a, b = (x[x.id.isin(keep)].sort_values(["adapter", "epoch", "id"]).reset_index(drop=True) for x in (a, b))
    pd.testing.assert_frame_equal(a[num], b[num], rtol=0, atol=1e-6)


def test_extra_seeds_train_to_their_stop_and_report_their_spread(base_run):
    """By default seeds 42, 43, 44: the extra seeds train through epoch 5 of the 12-epoch schedule and are scored at the
    sweep epochs they reached; 05 saves each seed's rows and the spread. `-p seeds='[42, 45]' -p extra_seed_epochs=3`
    trains one more seed, through epoch 3."""
    root, data, _, _ = base_run
    run = root / "run"
    assert sorted(complete_checkpoints(run / "steps" / "train-cot-seed43" / "checkpoints")) == [1, 2, 3, 4, 5]
    seeds = pd.read_csv(run / "artifacts" / "05_delta_delta_i" / "seed_table1.csv")
    assert set(seeds.seed) == {42, 43, 44} and sorted(set(seeds[seeds.seed == 44].epoch)) == [2, 3, 4, 5]
    spread = pd.read_csv(run / "artifacts" / "05_delta_delta_i" / "seed_spread.csv")
    early = spread[spread.epoch <= 5]
    assert (early.seeds == 3).all() and early.sd_delta_across_seeds.notna().all() and (spread[spread.epoch > 5].seeds == 1).all()
    assert ((early.min_delta <= early.mean_delta) & (early.mean_delta <= early.max_delta)).all()
    m = run_pipeline("smoke", run, str(data), params={"seeds": [42, 45], "extra_seed_epochs": 3}, log=lambda *_: None, book_root=None,
                     only=["03_train", "04_epoch_sweep", "05_delta_delta_i"])
    r = _reused(m)
    assert r["train-cot"] and not r["train-cot-seed45"] and not r["sweep-cot-seed45"], r
    assert sorted(complete_checkpoints(run / "steps" / "train-cot-seed45" / "checkpoints")) == [1, 2, 3]
    spread = pd.read_csv(run / "artifacts" / "05_delta_delta_i" / "seed_spread.csv")
    assert sorted(spread[spread.seeds == 2].epoch.unique()) == [2, 3]
    items = pd.read_csv(run / "artifacts" / "05_delta_delta_i" / "items.csv")
    assert {"CoT", "CoT seed 45", "no reasoning"} <= set(items.adapter)

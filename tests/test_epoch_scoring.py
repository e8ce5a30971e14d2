"""Scoring at every epoch end (§6.6): equal to the sweep's scores of the saved checkpoints, training unchanged;
the held-out selection rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cqa_utils.method import epoch_scoring as ES
from cqa_utils.method.config import STANDIN_DIR, get_profile
from cqa_utils.method.epoch_scoring import lowest_eval_loss_epoch, read_epoch_scores, select_epoch, selection_table
from cqa_utils.pipeline.sweep_step import score_checkpoints
from cqa_utils.pipeline.train_step import train_adapter
from tests.conftest import read_rows

EPOCHS = 3
SCORE_COLS = ["logp_cond_good", "logp_uncond_good", "logp_cond_bad", "logp_uncond_bad", "I_good", "I_bad", "dI"]


def _pick(rows, n):
    return [r for r in rows if r["domain"] == "literary"][:n] + [r for r in rows if r["domain"] == "factual"][:n]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke):
    """The same smoke adapter trained twice: with the epoch-end scoring callback and without it."""
    prof = get_profile("smoke").with_overrides(num_train_epochs=EPOCHS)
    train = read_rows(STANDIN_DIR / "train.jsonl")[:10]
    bench = _pick(read_rows(STANDIN_DIR / "benchmark" / "pairs.jsonl"), 3)
    cal = _pick(read_rows(STANDIN_DIR / "calibration" / "pairs.jsonl"), 3)
    conts = read_rows(STANDIN_DIR / "benchmark" / "continuations.jsonl")[:2]
    root = tmp_path_factory.mktemp("epochs")
    quiet = lambda *_: None  # noqa: E731
    train_adapter(root / "live", prof, train[:9], train[9:], epoch_pairs={"benchmark": bench, "calibration": cal},
                  epoch_continuations=conts, progress=quiet)
    train_adapter(root / "plain", prof, train[:9], train[9:], progress=quiet)
    return prof, root, bench, cal, conts, train


def test_live_scores_equal_the_sweep_of_saved_checkpoints(trained, tmp_path):
    prof, root, bench, cal, conts, _ = trained
    epochs = list(range(1, EPOCHS + 1))
    for name, pairs, cs in (("benchmark", bench, conts), ("calibration", cal, [])):
        score_checkpoints(tmp_path / f"reload-{name}", prof, pairs, cs, root / "live", epochs, progress=lambda *_: None)
        score_checkpoints(tmp_path / f"live-{name}", prof, pairs, cs, root / "live", epochs, live=True, pair_set=name,
                          progress=lambda *_: None)
        a = pd.read_parquet(tmp_path / f"reload-{name}" / "pair_scores.parquet").sort_values(["epoch", "id"]).reset_index(drop=True)
        b = pd.read_parquet(tmp_path / f"live-{name}" / "pair_scores.parquet").sort_values(["epoch", "id"]).reset_index(drop=True)
        assert list(a.columns) == list(b.columns) and len(a) == len(pairs) * (EPOCHS + 1)
        assert (a[["id", "model", "epoch"]] == b[["id", "model", "epoch"]]).all().all()
        np.testing.assert_allclose(b[SCORE_COLS].to_numpy(), a[SCORE_COLS].to_numpy(), rtol=0, atol=1e-5)
        assert not np.allclose(a[a.epoch == 0].dI, a[a.epoch == EPOCHS].dI, atol=1e-5)  # the adapter moved the scores
    ca = pd.read_parquet(tmp_path / "reload-benchmark" / "continuation_scores.parquet").sort_values(["epoch", "id"])
    cb = pd.read_parquet(tmp_path / "live-benchmark" / "continuation_scores.parquet").sort_values(["epoch", "id"])
    np.testing.assert_allclose(cb.logp.to_numpy(), ca.logp.to_numpy(), rtol=0, atol=1e-5)
    assert len(pd.read_csv(root / "live" / ES.EPOCH_TIMES)) == EPOCHS


def test_scoring_during_training_leaves_training_unchanged(trained):
    _, root, *_ = trained
    losses = lambda d: [(h["step"], h.get("loss"), h.get("eval_loss")) for h in json.loads((d / "log_history.json").read_text())]  # noqa: E731
    assert losses(root / "live") == losses(root / "plain")
    assert len(losses(root / "live")) > EPOCHS


def test_checkpoints_trained_without_the_callback_are_scored_from_disk(trained, tmp_path):
    """A step folder whose epochs were all trained before (here: without the callback) gets its epoch scores from
    the saved adapters: equal to the live scores of the identical run."""
    import shutil

    prof, root, bench, cal, conts, train = trained
    shutil.copytree(root / "plain", tmp_path / "plain")
    train_adapter(tmp_path / "plain", prof, train[:9], train[9:], epoch_pairs={"benchmark": bench, "calibration": cal},
                  epoch_continuations=conts, progress=lambda *_: None)
    a = read_epoch_scores(root / "live", "benchmark", bench, [1, 2, 3]).sort_values(["epoch", "id"])
    b = read_epoch_scores(tmp_path / "plain", "benchmark", bench, [1, 2, 3]).sort_values(["epoch", "id"])
    np.testing.assert_allclose(b[SCORE_COLS].to_numpy(), a[SCORE_COLS].to_numpy(), rtol=0, atol=1e-5)


def test_reading_epoch_scores_refuses_other_pairs_and_missing_epochs(trained):
    _, root, bench, cal, _, _ = trained
    with pytest.raises(ValueError, match="differ"):
        read_epoch_scores(root / "live", "benchmark", cal, [1])
    with pytest.raises(FileNotFoundError, match=r"epoch\(s\) \[7\]"):
        read_epoch_scores(root / "live", "calibration", cal, [1, 7])
    with pytest.raises(FileNotFoundError, match="no per-epoch scores"):
        read_epoch_scores(root / "plain", "benchmark", bench, [1])
    assert (root / "live" / ES.EPOCH_SCORES).exists()


def _items(means: dict[int, list[float]], domain: str = "literary") -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e, "id": f"i{k}", "domain": domain, "ddI": v} for e, vs in means.items() for k, v in enumerate(vs)])


def test_selection_takes_the_largest_mean_literary_calibration_effect_ties_earliest():
    lit = _items({2: [1.0, 3.0], 3: [4.0, 0.0], 4: [0.5, 0.5], 5: [2.0, 2.0]})  # means 2, 2, 0.5, 2: tie → epoch 2
    fac = _items({4: [100.0, 100.0]}, "factual")  # the factual group never decides
    chosen, means = select_epoch(pd.concat([lit, fac]))
    assert chosen == 2 and means.to_dict() == {2: 2.0, 3: 2.0, 4: 0.5, 5: 2.0}
    chosen, _ = select_epoch(_items({3: [1.0, 2.0], 6: [5.0, -1.0], 9: [0.0, 0.0]}))  # means 1.5, 2.0, 0.0
    assert chosen == 6
    with pytest.raises(ValueError, match="no literary"):
        select_epoch(fac)


def test_selection_table_reports_three_choices_at_their_epochs():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    bench = pd.concat([_items({e: list(rng.normal(e / 4, 1, 8))}, d).assign(id=lambda x, d=d: d + x.id)
                       for e in range(1, 7) for d in ("literary", "factual")])
    cal = _items({e: [float(e == 3)] * 4 for e in range(1, 7)})  # calibration peaks at epoch 3
    ev = pd.DataFrame({"epoch": range(1, 7), "eval_loss": [2.5, 2.0, 2.2, 2.0, 3.0, 3.1]})  # lowest: epoch 2 (tie → earliest)
    assert lowest_eval_loss_epoch(ev) == 2
    t = selection_table(bench, cal, ev, 5, "bits")
    lit = t[t.domain == "literary"].set_index("chosen by")
    assert lit.epoch.to_dict() == {"held-out calibration Δ(ΔI)": 3, "paper (post hoc)": 5, "lowest eval_loss": 2}
    x = bench[(bench.epoch == 3) & (bench.domain == "literary")].ddI.to_numpy()
    r = lit.loc["held-out calibration Δ(ΔI)"]
    assert r.delta == pytest.approx(x.sum() / len(x)) and r.n == len(x)
    assert r.wilcoxon_p == pytest.approx(wilcoxon(x, alternative="greater").pvalue)
    assert r.ci_low < r.delta < r.ci_high


def _selection(delta: float, lo: float, hi: float, p: float, n: int = 20) -> pd.DataFrame:
    return pd.DataFrame([{"chosen by": "held-out calibration Δ(ΔI)", "epoch": 4, "domain": "literary", "n": n, "delta": delta,
                          "ci_low": lo, "ci_high": hi, "wilcoxon_p": p, "unit": "bits"},
                         {"chosen by": "paper (post hoc)", "epoch": 5, "domain": "literary", "n": n, "delta": 9.0,
                          "ci_low": 8.0, "ci_high": 10.0, "wilcoxon_p": 0.001, "unit": "bits"}])


def test_heldout_selection_rule_each_outcome():
    from cqa_utils.method import claims as C

    assert C.rule_heldout_selection(_selection(1.2, 0.3, 2.1, 0.01)).verdict == "consistent"
    assert C.rule_heldout_selection(_selection(1.2, 0.3, 2.1, 0.06)).verdict == "inconclusive"  # p decides, not the CI
    assert C.rule_heldout_selection(_selection(-0.5, -1.5, 0.4, 0.8)).verdict == "inconclusive"
    o = C.rule_heldout_selection(_selection(-1.0, -2.0, -0.1, 0.99))
    assert o.verdict == "contradicted" and "epoch 4" in o.found and "-1.00 bits" in o.found  # the held-out row, not epoch 5
    assert C.rule_heldout_selection(None).verdict == C.UNTESTABLE
    assert C.rule_heldout_selection(_selection(1.0, 0.1, 2.0, float("nan"), n=0)).verdict == C.UNTESTABLE

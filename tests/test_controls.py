"""Held-out controls (notebook 07): folds, pooling, refusal of seen pairs, the statistics by hand, the sensitivity
sentence, and a smoke run of the notebook on a tiny data folder."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cqa_utils.method import controls as C
from cqa_utils.method import data
from cqa_utils.method.config import STANDIN_DIR
from tests.conftest import read_rows, small_data, write_rows

CAL = read_rows(STANDIN_DIR / "calibration" / "pairs.jsonl")
KEYS = {"detected", "d_z", "ci_low", "ci_high", "p", "epoch", "n", "signal", "sentence"}


# ------------------------------------------------------------------------------------------ folds

@pytest.mark.parametrize("k", [2, 3])
def test_folds_balance_domains_and_split_every_repeated_flaw(k):
    a = C.assign_folds(CAL, k, seed=42)
    assert set(a) == {p["id"] for p in CAL} and set(a.values()) == set(range(k))
    for dom in ("literary", "factual"):
        counts = Counter(a[p["id"]] for p in CAL if p["domain"] == dom)
        assert max(counts.values()) - min(counts.values()) <= 1, (dom, counts)
    by_flaw: dict[tuple[str, str], set[int]] = {}
    for p in CAL:
        by_flaw.setdefault((p["domain"], p["flaw"]), set()).add(a[p["id"]])
    sizes = Counter((p["domain"], p["flaw"]) for p in CAL)
    repeated = [f for f, n in sizes.items() if n >= 2]
    assert repeated and all(len(by_flaw[f]) >= 2 for f in repeated)
    assert C.assign_folds(CAL, k, seed=42) == a  # deterministic given the seed
    assert C.assign_folds(CAL, k, seed=7) != a


def test_folds_refuse_fewer_than_two_or_too_many():
    with pytest.raises(ValueError, match="at least 2 folds"):
        C.assign_folds(CAL, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        C.assign_folds(CAL[:3], 4)


# ------------------------------------------------------------------------------------------ plans and pooling

def _cot_rows(pairs):
    return [{"id": f"calcot-{p['id']}", "pair_id": p["id"], "domain": p["domain"], "instruction": "Judge the options.",
             "input": f"{p['context']}\n\nOptions:\nA. {p['good']}\nB. {p['bad']}", "output": "A keeps faith with the passage. A.",
             "decision": {"context": p["context"], "candidates": [p["good"], p["bad"]], "expert_choice": 0}} for p in pairs]


def _fake_items(fit, epochs=(2, 5), rng=None):
    rng = rng or np.random.default_rng(0)
    return pd.DataFrame([{"epoch": e, "id": p["id"], "domain": p["domain"], "dI_base": 0.0, "dI_lora": float(rng.normal()),
                          "ddI": 0.0} for e in epochs for p in fit.scored]).assign(ddI=lambda t: t.dI_lora - t.dI_base)


@pytest.mark.parametrize("signal", ["good", "bad", "cot"])
def test_pooling_scores_every_pair_exactly_once_and_unseen(signal):
    fits = C.plan(signal, CAL, folds=2, seed=42, cot=_cot_rows(CAL))
    assert len(fits) == 2
    for f in fits:  # its rows come from the other fold only (training and validation rows alike)
        scored = {p["id"] for p in f.scored}
        assert f.trained_on and not (f.trained_on & scored)
        assert len(f.train_rows) + len(f.val_rows) == len(CAL) - len(scored)
    items = C.pool(fits, [_fake_items(f) for f in fits], CAL)
    for _, g in items.groupby("epoch"):
        assert sorted(g.id) == sorted(p["id"] for p in CAL)
    assert not items.seen.any() and set(items.fold) == {0, 1}


def test_null_control_is_one_adapter_for_all_pairs_and_seen_is_the_upper_bound():
    neutral = [{"id": f"n{i}", "domain": "news", "context": f"Context {i}.", "passage": f"Passage {i}."} for i in range(10)]
    (null,) = C.plan("neutral", CAL, neutral=neutral)
    assert len(null.scored) == len(CAL) and null.trained_on == frozenset() and null.train_step == "train-control-neutral"
    (seen,) = C.plan("seen", CAL)
    assert (seen.train_step, seen.sweep_step) == ("train-control", "sweep-control")
    items = C.pool([null, seen], [_fake_items(null), _fake_items(seen)], CAL)
    assert not items[items.signal == "neutral"].seen.any()
    # the upper bound's seen items are those of its training split (36 of 40), not its 4 validation pairs
    tr, _ = data.split_train_val(data.preference_rows(CAL), 0.1, 42)
    assert set(items[(items.signal == "seen") & items.seen].id) == {CAL[i]["id"] for i in tr}


def test_a_pair_scored_by_the_adapter_of_its_own_fold_is_refused():
    fit = C.plan("good", CAL, folds=2)[0]
    with pytest.raises(ValueError, match="would be scored by an adapter trained on them"):
        C.Fit("good", 0, fit.train_rows, fit.val_rows, fit.trained_on, fit.scored + [CAL[[p["id"] for p in CAL].index(
            next(iter(fit.trained_on)))]])
    other = C.plan("good", CAL, folds=2)[1]
    with pytest.raises(ValueError, match="exactly once"):  # fold 0's scores twice, fold 1's never
        C.pool([fit, other], [_fake_items(fit), _fake_items(fit).pipe(lambda t: t[t.id.isin([p["id"] for p in other.scored])])], CAL)
    with pytest.raises(ValueError, match="not meant to score"):
        C.pool([fit, other], [_fake_items(other), _fake_items(fit)], CAL)


def test_cot_file_errors_name_line_and_field(tmp_path):
    rows = _cot_rows(CAL[:3])
    rows[1]["pair_id"] = "cal-nope"
    with pytest.raises(data.DataError, match=r"cot\.jsonl:2: pair_id: .*no such pair"):
        C.load_cot(write_rows(tmp_path / "cot.jsonl", rows), CAL)
    rows[1]["pair_id"] = rows[0]["pair_id"]
    with pytest.raises(data.DataError, match=r"cot\.jsonl:2: pair_id: .*second one"):
        C.load_cot(write_rows(tmp_path / "cot.jsonl", rows), CAL)
    del rows[2]["pair_id"]
    rows[1]["pair_id"] = CAL[1]["id"]
    with pytest.raises(data.DataError, match=r"cot\.jsonl:3: pair_id"):
        C.load_cot(write_rows(tmp_path / "cot.jsonl", rows), CAL)


# ------------------------------------------------------------------------------------------ statistics by hand

def _wilcoxon_p_by_enumeration(d: list[float]) -> float:
    """P(W+ ≥ observed) over all 2^n sign assignments of the ranks of |d| (no ties, no zeros)."""
    ranks = {v: r for r, v in enumerate(sorted(abs(x) for x in d), start=1)}
    obs = sum(ranks[abs(x)] for x in d if x > 0)
    n = len(d)
    hits = sum(sum(r for r, s in zip(range(1, n + 1), signs) if s) >= obs for signs in itertools.product([0, 1], repeat=n))
    return hits / 2**n


def _items(ddi: list[float], signal="bad", domain="literary", epoch=5) -> pd.DataFrame:
    return pd.DataFrame({"epoch": epoch, "id": [f"x{i}" for i in range(len(ddi))], "domain": domain,
                         "dI_base": 10.0, "dI_lora": [10.0 + x for x in ddi], "ddI": ddi, "signal": signal, "fold": 0, "seen": False})


def test_negative_control_p_fall_and_rise_by_hand():
    ddi = [-3.0, -1.0, -4.5, -1.6, -5.0, -9.0, -2.7, 0.5]
    t = C.control_table(_items(ddi)).iloc[0]
    assert t.p_fall == pytest.approx(_wilcoxon_p_by_enumeration([-x for x in ddi]), abs=1e-12)
    assert t.p_fall == pytest.approx(2 / 256)  # only W+ = 35 (observed) and 36 reach it
    assert t.p_rise == pytest.approx(_wilcoxon_p_by_enumeration(ddi), abs=1e-12)
    assert t.mean_ddI_bits == pytest.approx(sum(ddi) / len(ddi))
    assert t.d_z == pytest.approx(statistics.mean(ddi) / statistics.stdev(ddi))
    assert t.ci_low < t.mean_ddI_bits < t.ci_high < 0 and t.n == 8 and not t.seen


def test_bootstrap_dz_interval_against_scipy():
    x = np.random.default_rng(3).normal(0.6, 1.0, 20)
    lo, hi = C.bootstrap_dz_ci(x)
    ref = sps.bootstrap((x,), lambda v, axis=-1: v.mean(axis) / v.std(axis, ddof=1), method="percentile",
                        n_resamples=20_000, random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.06) and hi == pytest.approx(ref.high, abs=0.06)


# ------------------------------------------------------------------------------------------ the sensitivity sentence

def _mde(n: int) -> float:
    return 0.59 if n == 20 else math.inf


def test_sensitivity_detected_from_cot_when_present():
    up = [0.4, 1.1, 2.3, 0.8, 1.7, 3.1, 0.2, 1.5, 2.0, 0.9, 1.3, 2.6, 0.6, 1.9, 0.3, 1.2, 2.2, 0.7, 1.6, -0.5]
    items = pd.concat([_items(up, "cot"), _items([-x for x in up], "good")], ignore_index=True)
    s = C.sensitivity(items, 5, mde=_mde)
    assert set(s) == KEYS and json.loads(json.dumps(s)) == s
    assert s["detected"] is True and s["signal"] == "CoT judgments" and s["n"] == 20 and s["epoch"] == 5
    assert s["d_z"] == pytest.approx(statistics.mean(up) / statistics.stdev(up))
    assert s["p"] == pytest.approx(sps.wilcoxon(up, alternative="greater", method="exact").pvalue)
    assert s["ci_low"] < s["d_z"] < s["ci_high"]
    assert s["sentence"].startswith(f"On unseen items the pipeline detects a transferred preference of d_z = {s['d_z']:.2f} "
                                    f"[95 % CI {s['ci_low']:.2f}, {s['ci_high']:.2f}] at epoch 5 "
                                    "(CoT-judgment control, n = 20 literary pairs")
    assert s["sentence"].endswith("the smallest effect detectable with 80 % power at n = 20 is d_z = 0.59.")


def test_sensitivity_not_detected_falls_back_to_good_options():
    mixed = [0.4, -1.1, 2.3, -0.8, 1.7, -3.1, 0.2, -1.5, 2.0, -0.9, 1.3, -2.6, 0.6, -1.9, 0.3, -1.2, 2.2, -0.7, 1.6, -0.5]
    s = C.sensitivity(_items(mixed, "good"), 5, mde=_mde)
    assert s["detected"] is False and s["signal"] == "good options" and s["p"] > 0.05
    assert "does not detect" in s["sentence"] and "good-option control" in s["sentence"]
    # most ranks positive (Wilcoxon p < 0.05) but one huge fall makes the mean, and d_z, negative: not a detection
    s = C.sensitivity(_items([0.1 * i for i in range(1, 20)] + [-1000.0], "good"), 5, mde=_mde)
    assert s["p"] < 0.05 and s["d_z"] < 0 and s["detected"] is False


def test_sensitivity_not_computable_is_null():
    for items in (_items([1.0] * 20, "good", epoch=4), _items([1.0] * 20, "good"), _items([2.0], "good"),
                  _items([1.0, 2.0] * 10, "good", domain="factual")):
        s = C.sensitivity(items, 5, mde=_mde)
        assert set(s) == KEYS and s["detected"] is None and s["d_z"] is None and s["p"] is None
        assert "could not be computed" in s["sentence"]
    # seen rows never count
    assert C.sensitivity(_items([1.0, 2.0, 3.0] * 7, "good").assign(seen=True), 5, mde=_mde)["detected"] is None


# ------------------------------------------------------------------------------------------ extra seeds' early stop

def test_stopping_after_an_epoch_keeps_the_full_schedule(tmp_path):
    """Extra seeds stop after epoch 5 of 12 (`extra_seed_epochs`); their learning rate must follow the 12-epoch
    warm-up and cosine curve, not a schedule compressed into the epochs that run. Checked against the curve by hand."""
    from cqa_utils.method.config import get_profile
    from cqa_utils.pipeline.cache import refresh_model
    from cqa_utils.pipeline.train_step import train_adapter

    prof = get_profile("smoke")
    refresh_model(prof)
    rows = data.preference_rows(CAL[:5])
    train_adapter(tmp_path, prof, rows[:4], rows[4:], stop_after_epoch=2, progress=lambda *_: None)
    hp = prof.hparams
    logged = [(e["step"], e["learning_rate"]) for e in json.loads((tmp_path / "log_history.json").read_text()) if "learning_rate" in e]
    per_epoch = 4 // (hp.per_device_train_batch_size * hp.gradient_accumulation_steps)

    def cosine(t: int, total: int) -> float:  # the learning rate of optimiser step t + 1 (transformers' cosine with warm-up)
        warm = math.ceil(hp.warmup_ratio * total)
        if t < warm:
            return hp.learning_rate * t / warm
        return hp.learning_rate * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))

    assert [s for s, _ in logged] == list(range(1, 2 * per_epoch + 1))  # two epochs ran, no more
    full, short = hp.num_train_epochs * per_epoch, 2 * per_epoch
    assert [lr for _, lr in logged] == pytest.approx([cosine(s - 1, full) for s, _ in logged], rel=1e-9, abs=1e-12)
    assert [lr for _, lr in logged] != pytest.approx([cosine(s - 1, short) for s, _ in logged], rel=1e-3)


# ------------------------------------------------------------------------------------------ smoke run of notebook 07

@pytest.mark.pipeline
def test_notebook_07_smoke_end_to_end(tmp_path):
    """Every control on 4 + 4 calibration pairs, 2 folds, two scored epochs (about a minute on 2 idle cores)."""
    from cqa_utils.pipeline.run import run_pipeline

    d = small_data(tmp_path / "data", n_train=6, n_pairs=4, n_conts=1)
    cal = read_rows(d / "calibration" / "pairs.jsonl")
    write_rows(d / "calibration" / "cot_judgments.jsonl", _cot_rows(cal))
    write_rows(d / "controls" / "neutral.jsonl",
               [{"id": f"n{i}", "domain": "news", "context": p["context"], "passage": p["good"][::-1]} for i, p in enumerate(cal)])
    t0 = time.perf_counter()
    run_pipeline("smoke", tmp_path / "run", str(d), params={"epochs": [2, 5]}, only=["07_positive_control"],
                 log=lambda *_: None, book_root=None)
    art = tmp_path / "run" / "artifacts" / "07_positive_control"
    items = pd.read_csv(art / "items.csv")
    held = items[items.signal != "seen"]
    assert set(held.signal) == {"good", "cot", "bad", "neutral"} and not held.seen.any()
    assert (held.groupby(["signal", "epoch"]).id.agg(lambda s: sorted(s) == sorted(p["id"] for p in cal))).all()
    table = pd.read_csv(art / "controls_table.csv")
    assert list(table.columns) == ["signal", "domain", "epoch", "n", "mean_ddI_bits", "d_z", "p_rise", "p_fall", "ci_low",
                                   "ci_high", "seen"]
    sens = json.loads((art / "sensitivity.json").read_text())
    assert set(sens) == KEYS and sens["signal"] == "CoT judgments" and sens["n"] == 4
    assert sorted(p.name for p in (tmp_path / "run" / "steps").iterdir() if p.name.startswith("train-")) == [
        "train-control", "train-control-bad-f0", "train-control-bad-f1", "train-control-cot-f0", "train-control-cot-f1",
        "train-control-good-f0", "train-control-good-f1", "train-control-neutral"]
    print(f"notebook 07 on smoke: {time.perf_counter() - t0:.0f} s")


def test_one_test_reaches_every_table_that_applies_it(monkeypatch):
    """Replacing ``stats.paired_tests`` (the test 05 invites editing) changes 05's Table 1, the seeds' tables the
    claims judge, the held-out controls' table and the sensitivity that gates the literary claim."""
    from cqa_utils.method import claims
    from cqa_utils.method import stats as S

    ddi = [1.0, 2.5, -0.5, 3.0, 1.5, 2.0, 0.5, 4.0]
    items = _items(ddi, signal="good")
    scores = pd.concat([pd.DataFrame({"model": "base", "epoch": 0, "id": items.id, "domain": "literary", "dI": items.dI_base}),
                        pd.DataFrame({"model": "epoch-5", "epoch": 5, "id": items.id, "domain": "literary", "dI": items.dI_lora})])
    seed_items = items.assign(adapter="CoT")[["adapter", "epoch", "id", "domain", "dI_base", "dI_lora", "ddI"]]

    def tables():
        return (S.delta_delta_i(scores, "nats", check=False)[1].wilcoxon_p.iloc[0],
                claims.seed_tables_from_items(seed_items, [42])[0][42].wilcoxon_p.iloc[0],
                C.control_table(items).p_rise.iloc[0],
                C.sensitivity(items, 5, mde=_mde)["p"])

    before = tables()
    real = S.paired_tests
    monkeypatch.setattr(S, "paired_tests", lambda lora, base: {**real(lora, base), "wilcoxon_p": 0.123456})
    after = tables()
    assert all(b != 0.123456 for b in before) and all(a == 0.123456 for a in after), (before, after)

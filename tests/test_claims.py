"""Every claim rule: one hand-built case for each outcome it can give (consistent, contradicted, inconclusive,
cannot be tested here), the held-out gate, the seeds, the tie rule and the status line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cqa_utils.method import claims as C
from cqa_utils.method import stats

SWEEP = (2, 3, 4, 5, 6, 8, 12)
PAPER_LIT_P = dict(zip(SWEEP, (0.273, 0.226, 0.049, 0.041, 0.095, 0.077, 0.062)))
PAPER_LIT_DELTA = dict(zip(SWEEP, (1.54, 4.12, 7.87, 9.58, 8.41, 9.57, 11.71)))


def table1(lit_p=None, lit_delta=None, lit_dz=0.5, fac_dz=-0.05, fac_p=0.7, n=20, epochs=SWEEP) -> pd.DataFrame:
    """A Table 1 with the given literary p/Δ per epoch (the paper's by default) and a flat factual group."""
    lit_p, lit_delta = lit_p or PAPER_LIT_P, lit_delta or PAPER_LIT_DELTA
    rows = []
    for e in epochs:
        dz = lit_dz[e] if isinstance(lit_dz, dict) else lit_dz
        fz = fac_dz[e] if isinstance(fac_dz, dict) else fac_dz
        rows.append({"epoch": e, "domain": "literary", "n": n, "delta": lit_delta[e], "wilcoxon_p": lit_p[e], "d_z": dz,
                     "d_av": dz, "holm_p": min(1.0, 7 * lit_p[e])})
        rows.append({"epoch": e, "domain": "factual", "n": n, "delta": -1.0, "wilcoxon_p": fac_p, "d_z": fz, "d_av": fz,
                     "holm_p": 1.0})
    return pd.DataFrame(rows).assign(unit="bits")


def inputs(**kw) -> C.ClaimInputs:
    kw.setdefault("table1", table1())
    return C.ClaimInputs(**kw)


def items(lit: list[float], fac: list[float], epoch: int = 5) -> pd.DataFrame:
    rows = [{"epoch": epoch, "id": f"lit{k}", "domain": "literary", "ddI": v} for k, v in enumerate(lit)]
    rows += [{"epoch": epoch, "id": f"fac{k}", "domain": "factual", "ddI": v} for k, v in enumerate(fac)]
    return pd.DataFrame(rows)


POS = [1.0 + 0.1 * k for k in range(20)]  # clearly positive, distinct
NEG = [-1.0 - 0.1 * k for k in range(20)]


SENS_YES = {"detected": True, "d_z": 0.9, "ci_low": 0.4, "ci_high": 1.4, "p": 0.001, "epoch": 5, "n": 40,
            "signal": "good options", "sentence": "s"}
SENS_NO = SENS_YES | {"detected": False, "d_z": 0.1, "p": 0.3}


def judge(cid: str, **kw) -> C.Outcome:
    """The claim's outcome as the table gives it: its rule, the declared gate, the seeds."""
    row = next(r for r in C.criteria().itertuples() if r.id == cid)
    return C.judge(row, inputs(**kw))


# ------------------------------------------------------------------ the criteria file


def test_criteria_declared_for_every_rule():
    crit = C.criteria()
    assert list(crit.columns) == C.COLUMNS + ["failure"]
    assert crit.id.is_unique and set(C.RULES) <= set(crit.id)
    for r in crit.itertuples():
        assert r.claim and r.section and r.why and r.consistent and r.contradicted and r.inconclusive and r.untestable, r.id
        assert (r.id in C.RULES) == (r.test != "none possible here"), r.id
    assert set(crit.id[crit.central == "yes"]) == {"literary_effect", "factual_null", "domain_selectivity"}
    assert "0.287" in crit.set_index("id").loc["significance_pattern", "why"]  # the paper's smallest Holm p, not "≥ 0.29"


def test_thresholds_come_from_the_file(tmp_path):
    p = C.params("training_time")
    assert p == {"paper_s": 335.0, "factor": 2.0}
    limit = p["factor"] * p["paper_s"] / 60
    assert f"{limit:.2f} min" == "11.17 min" and "11.17 min" in C.criteria().set_index("id").loc["training_time", "threshold"]
    assert C.params("factual_null")["bound"] == 0.5 and C.PAPER_TRAIN_MIN == pytest.approx(5 + 35 / 60)
    bad = C.criteria().drop(columns="failure")
    bad.loc[1, "params"] = "alpha=0.05; bound"
    bad.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match=r"c.csv:3 \(factual_null\): field 'params': 'bound'"):
        C.criteria(tmp_path / "c.csv")


# ------------------------------------------------------------------ literary effect (gate, power, ablation)


def test_literary_effect_consistent():
    o = judge("literary_effect")  # the paper's own numbers; no ablation
    assert o.verdict == C.CONSISTENT and o.qualifier == "effect only; reasoning attribution untested"
    assert C.verdict_text(o) == "consistent (effect only; reasoning attribution untested)"
    assert "no held-out positive control" in o.found  # consistent needs no gate
    cot = items(POS, NEG)
    o = judge("literary_effect", items=cot, ablation_items=items([v - 0.9 for v in POS], NEG))
    assert o.verdict == C.CONSISTENT and o.qualifier == ""
    o = judge("literary_effect", items=cot, ablation_items=items([v + 0.5 for v in POS], NEG))
    assert o.verdict == C.CONSISTENT and o.qualifier == "effect only; its attribution to the reasoning not shown"


def test_literary_effect_contradicted_only_with_the_held_out_control():
    against = table1(lit_p={**PAPER_LIT_P, 5: 0.6}, lit_delta={**PAPER_LIT_DELTA, 5: -1.0}, lit_dz={e: -0.4 for e in SWEEP})
    lo, hi = stats.dz_ci(-0.4, 20)
    assert hi < 0.5  # the interval excludes the paper's d
    o = judge("literary_effect", table1=against, sensitivity=SENS_YES)
    assert o.verdict == C.CONTRADICTED and f"{hi:+.2f}]" in o.found and "detected" in o.found
    o = judge("literary_effect", table1=against, sensitivity=SENS_NO)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("instrument not shown sensitive on unseen items")
    o = judge("literary_effect", table1=against)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.endswith("is missing")
    seen = table1(lit_dz=1.2, lit_p={e: 1e-5 for e in SWEEP})  # the seen-items control gates nothing
    assert judge("literary_effect", table1=against, control_table1=seen).verdict == C.INCONCLUSIVE


def test_literary_effect_inconclusive_underpowered_and_untestable():
    weak = table1(lit_p={**PAPER_LIT_P, 5: 0.237}, lit_delta={**PAPER_LIT_DELTA, 5: 1.70}, lit_dz={e: 0.14 for e in SWEEP})
    o = judge("literary_effect", table1=weak, sensitivity=SENS_YES)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("underpowered")
    assert o.qualifier.endswith(f"is {stats.wilcoxon_power(0.5, 20):.2f}")
    assert judge("literary_effect", table1=table1(epochs=(2, 3))).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ factual null (TOST)


def test_factual_null_each_outcome():
    assert judge("factual_null", table1=table1(fac_dz=0.02, n=200)).verdict == C.CONSISTENT
    assert judge("factual_null", table1=table1(fac_dz=0.0)).verdict == C.CONSISTENT  # n = 20: TOST p = 0.0127 (±0.5)
    o = judge("factual_null", table1=table1(fac_dz=0.2, fac_p=0.6))
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.endswith("with n = 20 is 0.44") and "p > 0.5: met" in o.found
    assert judge("factual_null", table1=table1(fac_dz=0.8, fac_p=0.001), sensitivity=SENS_YES).verdict == C.CONTRADICTED
    o = judge("factual_null", table1=table1(fac_dz=0.8, fac_p=0.001), sensitivity=SENS_NO)
    assert o.verdict == C.INCONCLUSIVE and "not shown sensitive" in o.qualifier
    assert judge("factual_null", table1=table1(epochs=(2, 3))).verdict == C.UNTESTABLE
    assert judge("factual_null", table1=table1(fac_dz=float("nan"))).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ domain selectivity


def test_domain_selectivity_each_outcome():
    o = judge("domain_selectivity", items=items(POS, NEG))
    assert o.verdict == C.CONSISTENT and "Mann–Whitney" in o.found
    assert judge("domain_selectivity", items=items(NEG, POS), sensitivity=SENS_YES).verdict == C.CONTRADICTED
    assert judge("domain_selectivity", items=items(NEG, POS), sensitivity=SENS_NO).verdict == C.INCONCLUSIVE
    same = np.random.default_rng(0).normal(0, 1, 40)
    o = judge("domain_selectivity", items=items(list(same[:20]), list(same[20:])), sensitivity=SENS_YES)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("underpowered") and "0.62 sd" in o.qualifier
    assert judge("domain_selectivity").verdict == C.UNTESTABLE  # no items, no pair scores
    assert judge("domain_selectivity", items=items(POS, [])).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ the sweep pattern and its tie rule


def test_significance_pattern_each_outcome():
    assert judge("significance_pattern").verdict == C.CONSISTENT  # the paper's own p-values
    early = table1(lit_p={**PAPER_LIT_P, 3: 0.03})
    assert judge("significance_pattern", table1=early, sensitivity=SENS_YES).verdict == C.CONTRADICTED
    assert judge("significance_pattern", table1=early).verdict == C.INCONCLUSIVE  # no held-out control
    late = table1(lit_p={**PAPER_LIT_P, 12: 0.01})
    assert judge("significance_pattern", table1=late, sensitivity=SENS_YES).verdict == C.CONTRADICTED
    none_sig = table1(lit_p={e: 0.2 + 0.01 * e for e in SWEEP})
    o = judge("significance_pattern", table1=none_sig, sensitivity=SENS_YES)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("underpowered")
    assert judge("significance_pattern", table1=table1(epochs=(2, 4, 5, 6))).verdict == C.UNTESTABLE


def test_significance_pattern_tie_rule():
    # an exact tie for the smallest p: both epochs are "smallest"; the peak holds iff epoch 5 is among them
    o = judge("significance_pattern", table1=table1(lit_p={**PAPER_LIT_P, 4: 0.041, 5: 0.041}))
    assert o.verdict == C.CONSISTENT and "epochs 4, 5 (tied)" in o.found  # the earliest-epoch rule would say 4
    tie12 = table1(lit_p={**PAPER_LIT_P, 12: 2.384185791015625e-05, 5: 2.384185791015625e-05})
    assert judge("significance_pattern", table1=tie12).verdict == C.CONSISTENT
    near = table1(lit_p={**PAPER_LIT_P, 4: 0.041 * (1 + 1e-6)})  # not a tie: 5 alone is smallest
    assert "epoch 5;" in judge("significance_pattern", table1=near).found


# ------------------------------------------------------------------ rising mean, factual at every epoch


def items_two_epochs(at5: list[float], at12: list[float]) -> pd.DataFrame:
    return pd.concat([items(at5, [], 5), items(at12, [], 12)], ignore_index=True)


def test_literary_keeps_rising_each_outcome():
    assert judge("literary_keeps_rising").verdict == C.CONSISTENT
    fall = table1(lit_delta={**PAPER_LIT_DELTA, 12: 9.0})
    o = judge("literary_keeps_rising", table1=fall, items=items_two_epochs(POS, [v - 1.0 for v in POS]))
    assert o.verdict == C.CONTRADICTED and "[95 % t -1.00, -1.00]" in o.found
    noisy = [v + (3.0 if k % 2 else -3.2) for k, v in enumerate(POS)]
    o = judge("literary_keeps_rising", table1=fall, items=items_two_epochs(POS, noisy))
    assert o.verdict == C.INCONCLUSIVE and "reaches 0" in o.qualifier
    assert judge("literary_keeps_rising", table1=fall).verdict == C.INCONCLUSIVE  # no items to bound the fall
    assert judge("literary_keeps_rising", table1=table1(epochs=(2, 3, 4, 5))).verdict == C.UNTESTABLE


def test_factual_null_every_epoch_each_outcome():
    assert judge("factual_null_every_epoch", table1=table1(fac_dz=-0.14)).verdict == C.CONSISTENT
    big = table1(fac_dz={**{e: 0.0 for e in SWEEP}, 8: 0.9})  # interval at n = 20 about [0.37, 1.41]: outside ±0.15
    o = judge("factual_null_every_epoch", table1=big, sensitivity=SENS_YES)
    assert o.verdict == C.CONTRADICTED and "at epochs 8" in o.found
    assert judge("factual_null_every_epoch", table1=big).verdict == C.INCONCLUSIVE
    o = judge("factual_null_every_epoch", table1=table1(fac_dz={**{e: 0.0 for e in SWEEP}, 8: 0.15}), sensitivity=SENS_YES)
    # under no effect each |d_z| ≥ 0.15 with P = 2·P(t_19 ≥ 0.15·√20) = 0.51
    assert o.verdict == C.INCONCLUSIVE and "probability 0.51 at n = 20" in o.qualifier
    t = table1(fac_dz=0.0)
    assert judge("factual_null_every_epoch", table1=t[t.domain == "literary"]).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ eval_loss


def losses(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(values) + 1), "eval_loss": values})


def test_eval_loss_monotone_each_outcome():
    assert judge("eval_loss_monotone", epochs=losses([2.7 + 0.16 * k for k in range(12)])).verdict == C.CONSISTENT
    o = judge("eval_loss_monotone", epochs=losses([3.64, 3.51, 3.53, 3.68, 3.94]))  # one 3.6 % dip, as the reference run
    assert o.verdict == C.INCONCLUSIVE and "epoch 2 (by 3.6 %)" in o.found
    assert judge("eval_loss_monotone", epochs=losses([2.7, 2.9, 2.8, 3.0, 2.95, 3.1])).verdict == C.CONTRADICTED  # two falls
    assert judge("eval_loss_monotone", epochs=losses([3.0, 2.5, 2.8, 3.2])).verdict == C.CONTRADICTED  # one fall of 17 %
    assert judge("eval_loss_monotone", epochs=losses([3.0, 3.1, 2.9])).verdict == C.CONTRADICTED  # no overall rise
    assert judge("eval_loss_monotone", epochs=losses([2.7, 2.8])).verdict == C.UNTESTABLE
    assert judge("eval_loss_monotone").verdict == C.UNTESTABLE


def test_eval_loss_uses_one_adapter():
    mixed = pd.concat([losses([2.7 + 0.1 * k for k in range(12)]).assign(adapter="CoT"),
                       losses([0.1] * 5).assign(adapter="no reasoning")])
    assert judge("eval_loss_monotone", epochs=mixed).verdict == C.CONSISTENT  # the CoT adapter's rows only
    two = pd.concat([losses([1.0, 2.0, 3.0]).assign(adapter="a"), losses([1.0, 2.0, 3.0]).assign(adapter="b")])
    with pytest.raises(ValueError, match="adapters"):
        judge("eval_loss_monotone", epochs=two)
    with pytest.raises(ValueError, match="appear twice"):
        judge("eval_loss_monotone", epochs=pd.concat([losses([1.0, 2.0, 3.0])] * 2))


def test_checkpoint_choice_each_outcome():
    rising = losses([2.7 + 0.16 * k for k in range(12)])  # lowest at epoch 1, which the sweep never scores
    o = judge("checkpoint_choice", epochs=rising)
    assert o.verdict == C.CONSISTENT and "lowest eval_loss at epoch 2" in o.found  # among the sweep epochs: 2 vs 5
    dip = losses([3.0, 2.9, 2.8, 2.7, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3])  # lowest at 5, as Δ(ΔI)
    assert judge("checkpoint_choice", epochs=dip).verdict == C.CONTRADICTED
    none_sig = table1(lit_p={e: 0.2 + 0.01 * e for e in SWEEP})
    o = judge("checkpoint_choice", table1=none_sig, epochs=rising)
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("moot")
    assert judge("checkpoint_choice", epochs=losses([2.7])).verdict == C.UNTESTABLE  # epoch 1 only: not in the sweep
    assert judge("checkpoint_choice", table1=table1(epochs=(5,)), epochs=rising).verdict == C.UNTESTABLE


def test_checkpoint_choice_tie_rule():
    tied = table1(lit_p={**PAPER_LIT_P, 2: 0.041})  # epochs 2 and 5 tie for the smallest p
    dip = losses([3.0, 2.9, 2.8, 2.7, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3])  # eval_loss picks 5: among the tied
    o = judge("checkpoint_choice", table1=tied, epochs=dip)
    assert o.verdict == C.CONTRADICTED and "smallest literary p at epoch 2, 5" in o.found  # earliest-epoch rule: 2 ≠ 5
    rising = losses([2.7 + 0.16 * k for k in range(12)])
    assert judge("checkpoint_choice", table1=table1(lit_p={**PAPER_LIT_P, 4: 0.041}), epochs=rising).verdict == C.CONSISTENT


# ------------------------------------------------------------------ Δ log P (Table 2)


def table2(lit=(-0.813, -0.894, -0.731), fac=(-0.670, -0.791, -0.549), rows=C.DLOGP_ROWS, n=20) -> pd.DataFrame:
    vals = {"literary": lit, "news": (-0.609, -0.762, -0.456), "popsci": (-0.732, -0.943, -0.520), "factual combined": fac}
    return pd.DataFrame([{"domain": d, "n": n, "delta": vals[d][0], "ci_low": vals[d][1], "ci_high": vals[d][2]} for d in rows])


def test_dlogp_all_fall_each_outcome():
    assert judge("dlogp_all_fall", table2=table2()).verdict == C.CONSISTENT
    assert judge("dlogp_all_fall", table2=table2(fac=(-0.1, -0.3, 0.1))).verdict == C.INCONCLUSIVE
    assert judge("dlogp_all_fall", table2=table2(fac=(0.2, 0.1, 0.3))).verdict == C.CONTRADICTED
    o = judge("dlogp_all_fall", table2=table2(rows=("literary", "news", "factual combined")))
    assert o.verdict == C.UNTESTABLE and "popsci" in o.found
    assert judge("dlogp_all_fall").verdict == C.UNTESTABLE


def test_dlogp_literary_more_each_outcome():
    o = judge("dlogp_literary_more", table2=table2())  # the paper's own rows: Welch [-0.285, -0.001]
    assert o.verdict == C.CONSISTENT and "[-0.285, -0.001]" in o.found
    assert judge("dlogp_literary_more", table2=table2(lit=(-0.70, -0.78, -0.62))).verdict == C.INCONCLUSIVE
    assert judge("dlogp_literary_more", table2=table2(lit=(-0.2, -0.3, -0.1))).verdict == C.CONTRADICTED
    assert judge("dlogp_literary_more", table2=table2(rows=("literary", "news"))).verdict == C.UNTESTABLE
    assert judge("dlogp_literary_more", table2=table2(n=1)).verdict == C.UNTESTABLE


def test_dlogp_literary_more_uses_sd_column():
    rng = np.random.default_rng(1)
    a, b = rng.normal(-0.9, 0.3, 20), rng.normal(-0.6, 0.2, 20)
    base = pd.DataFrame({"id": range(40), "domain": ["literary"] * 20 + ["news"] * 20, "logp_per_token": 0.0})
    t2 = stats.delta_logp_table(base, base.assign(logp_per_token=np.r_[a, b]), unit="nats")
    o = judge("dlogp_literary_more", table2=t2)
    from scipy import stats as sps

    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert f"[{ci.low:+.3f}, {ci.high:+.3f}]" in o.found


# ------------------------------------------------------------------ sharpening


def pair_scores(d_cond: list[float], d_unc: list[float], epoch: int = 5) -> pd.DataFrame:
    """Base scores fixed; at ``epoch`` the good option's conditional / unconditional log-probs move by the given amounts."""
    rows = []
    for k, (c, u) in enumerate(zip(d_cond, d_unc)):
        b = {"id": f"lit{k}", "domain": "literary", "logp_cond_good": -20.0, "logp_cond_bad": -22.0, "logp_uncond_good": -30.0,
             "logp_uncond_bad": -31.0, "n_tokens_good": 10, "n_tokens_bad": 11}
        rows.append({"model": "base", "epoch": 0, **b})
        rows.append({**b, "model": f"epoch-{epoch}", "epoch": epoch, "logp_cond_good": b["logp_cond_good"] + c,
                     "logp_uncond_good": b["logp_uncond_good"] + u})
    df = pd.DataFrame(rows)
    return df.assign(dI=(df.logp_cond_good - df.logp_uncond_good) - (df.logp_cond_bad - df.logp_uncond_bad))


def test_sharpening_each_outcome():
    up = [1.0 + 0.1 * k for k in range(12)]  # mean 1.55 nats = 2.24 bits
    small = [0.1 * (-1) ** k for k in range(12)]
    o = judge("sharpening", pair_scores=pair_scores(up, small))
    assert o.verdict == C.CONSISTENT and "+2.24 bits" in o.found
    o = judge("sharpening", pair_scores=pair_scores(up, [0.8 * v for v in up]))  # H(X) moves too
    assert o.verdict == C.INCONCLUSIVE and "= 0.80" in o.found and "unconditional" in o.qualifier
    assert judge("sharpening", pair_scores=pair_scores([-v for v in up], small)).verdict == C.CONTRADICTED
    mixed = [(-1) ** k * (1.0 + 0.1 * k) for k in range(12)]
    o = judge("sharpening", pair_scores=pair_scores(mixed, small))
    assert o.verdict == C.INCONCLUSIVE and "not shown positive" in o.qualifier
    assert judge("sharpening").verdict == C.UNTESTABLE
    assert judge("sharpening", pair_scores=pair_scores(up, small, epoch=4)).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ training time


def test_training_time_each_outcome():
    gpu = {"device": "NVIDIA H200", "profile": "paper"}
    assert judge("training_time", gpu_timing=gpu | {"minutes": 11.16}).verdict == C.CONSISTENT  # limit 2 × 5 min 35 s = 11.17
    o = judge("training_time", gpu_timing=gpu | {"minutes": 11.18})
    assert o.verdict == C.CONTRADICTED and "H200" in o.found and "11.17 min" in o.found
    assert judge("training_time").verdict == C.UNTESTABLE
    assert judge("training_time", gpu_timing={"minutes": 7.5, "device": "NVIDIA H200"}).verdict == C.UNTESTABLE  # no profile
    assert judge("training_time", gpu_timing={"minutes": 1.0, "device": "x", "profile": "cpu"}).verdict == C.UNTESTABLE
    o = judge("training_time", gpu_timing={"minutes": 7.5, "device": "cpu", "profile": "paper"})
    assert o.verdict == C.UNTESTABLE and "GPU timing is required" in o.found


# ------------------------------------------------------------------ seeds


def test_seed_sensitive_rows_say_which_seed_gave_what():
    weak = table1(lit_p={**PAPER_LIT_P, 5: 0.237}, lit_dz={e: 0.14 for e in SWEEP})
    o = judge("literary_effect", seed_tables={42: table1(), 43: weak, 44: table1()})
    assert o.verdict == C.INCONCLUSIVE
    assert o.qualifier == "seed-sensitive: seed 42 consistent, seed 43 inconclusive, seed 44 consistent"
    o = judge("literary_effect", seed_tables={43: table1(), 44: table1()})
    assert o.verdict == C.CONSISTENT and "the same verdict at seeds 42, 43, 44" in o.found
    o = judge("literary_effect", table1=weak, seed_tables={43: table1()})  # the primary (42) is weak, 43 not
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("seed-sensitive: seed 42 inconclusive")
    # a rule not declared per seed ignores the seed tables
    assert judge("dlogp_all_fall", table2=table2(), seed_tables={43: weak}).verdict == C.CONSISTENT


def test_seeds_are_compared_on_the_epochs_every_seed_reached():
    """Extra seeds stop at epoch 5: a factual |d| above the bound at epoch 12 (which only the primary reached) is
    the primary's verdict, not a disagreement between seeds."""
    big12 = {e: (0.4 if e == 12 else 0.05) for e in SWEEP}
    short = table1(epochs=(2, 3, 4, 5))
    o = judge("factual_null_every_epoch", table1=table1(fac_dz=big12), seed_tables={43: short, 44: short})
    assert "seed-sensitive" not in (o.qualifier or "") and "12" in o.found, o
    # a real disagreement on the shared epochs is still seed-sensitive
    o = judge("factual_null_every_epoch", table1=table1(), seed_tables={43: table1(epochs=(2, 3, 4, 5), fac_dz=0.4)})
    assert o.verdict == C.INCONCLUSIVE and o.qualifier.startswith("seed-sensitive"), o


def test_seed_tables_from_items_recomputes_table1():
    rng = np.random.default_rng(0)
    rows = [{"epoch": 5, "id": f"i{k}", "domain": d, "dI_base": b, "dI_lora": b + x, "ddI": x, "adapter": a}
            for a in ("CoT", "CoT seed 43") for d in ("literary", "factual")
            for k, (b, x) in enumerate(zip(rng.normal(size=20), rng.normal(0.5, 1, 20)))]
    tables, by_seed = C.seed_tables_from_items(pd.DataFrame(rows), [42, 43])
    assert set(tables) == {42, 43} and set(by_seed) == {42, 43}
    g = pd.DataFrame(rows).query("adapter == 'CoT seed 43' and domain == 'literary'")
    got = tables[43].set_index("domain").loc["literary"]
    assert got.d_z == pytest.approx(g.ddI.mean() / g.ddI.std(ddof=1))


# ------------------------------------------------------------------ end to end, status


def test_build_claims_end_to_end():
    rng = np.random.default_rng(0)
    d_cond = list(rng.normal(3.0, 1.0, 20))
    ps = pair_scores(d_cond, [0.1] * 20)
    fac = pair_scores([0.0] * 20, [0.0] * 20).assign(domain="factual")
    fac["id"] = fac.id.str.replace("lit", "fac")
    ps = pd.concat([ps, fac], ignore_index=True)
    it, t1 = stats.delta_delta_i(ps.assign(dI=ps.dI), unit="nats")
    out = C.build_claims(t1, table2(), losses([2.7 + 0.1 * k for k in range(12)]), ps, 5, "d_z", "smoke profile")
    crit = C.criteria()
    assert list(out.id) == list(crit.id) and set(out.verdict) <= set(C.VERDICTS)
    assert list(out.columns) == ["id", "claim", "paper §", "paper reports", "this run", "verdict", "verdict_detail", "central"]
    v = out.set_index("id").verdict
    # literary Δ(ΔI) per item = d_cond − 0.1 > 0 everywhere, factual all zero
    assert v["domain_selectivity"] == C.CONSISTENT and v["sharpening"] == C.CONSISTENT and v["literary_effect"] == C.CONSISTENT
    assert v["training_time"] == C.UNTESTABLE and v["duality"] == C.UNTESTABLE
    assert v["significance_pattern"] == C.UNTESTABLE  # only epoch 5 was scored
    assert v["factual_null"] == C.UNTESTABLE  # factual Δ are all 0: d_z undefined
    assert out.set_index("id").loc["dataset_coverage", "this run"].startswith("No survey")
    assert "smoke profile" in out.attrs["caveats"][0] and not out["this run"].str.contains("smoke profile").any()
    lit = t1[(t1.domain == "literary")].iloc[0]
    assert f"{lit.delta:+.2f} nats" in out.set_index("id").loc["literary_effect", "this run"]
    out2 = C.build_claims(t1, table2(), None, ps, 5, items=it, sensitivity=SENS_YES,
                          gpu_timing={"minutes": 6.0, "device": "H200", "profile": "paper"})
    v2 = out2.set_index("id")
    assert v2.loc["literary_effect", "verdict_detail"] == "consistent (effect only; reasoning attribution untested)"
    assert "held-out positive control (good options), epoch 5, n = 40" in v2.loc["literary_effect", "this run"]
    assert v2.loc["training_time", "verdict"] == C.CONSISTENT and v2.loc["eval_loss_monotone", "verdict"] == C.UNTESTABLE


def _table(**verdicts) -> pd.DataFrame:
    return pd.DataFrame([{"id": k, "verdict": v, "central": k in ("literary_effect", "factual_null", "domain_selectivity")}
                         for k, v in verdicts.items()])


def test_summary_status_three_ways():
    s = C.summary(_table(literary_effect=C.CONSISTENT, factual_null=C.CONSISTENT, domain_selectivity=C.CONSISTENT,
                         eval_loss_monotone=C.CONTRADICTED))
    assert s["status"] == "[Re]" and s["counts"] == {C.CONSISTENT: 3, C.CONTRADICTED: 1}
    s = C.summary(_table(literary_effect=C.CONTRADICTED, factual_null=C.CONSISTENT, domain_selectivity=C.INCONCLUSIVE))
    assert s["status"] == "[¬Re]" and "literary_effect — contradicted" in s["sentence"]
    s = C.summary(_table(literary_effect=C.INCONCLUSIVE, factual_null=C.CONSISTENT, domain_selectivity=C.CONSISTENT))
    assert s["status"] == "inconclusive" and s["sentence"].startswith("No central claim is contradicted")
    assert all(v in s["vocabulary"] for v in C.VERDICTS)


def test_shared_caveats():
    cav = C.shared_caveats("cpu profile", standin=True)
    assert len(cav) == 3 and "stand-in" in cav[1] and "cpu profile" in cav[0]
    assert len(C.shared_caveats()) == 2

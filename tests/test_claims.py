"""Every claim rule: a pass case, a fail case and (where an input can be missing) a cannot-be-tested case."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


# ------------------------------------------------------------------ the criteria file


def test_criteria_declared_for_every_rule():
    crit = C.criteria()
    assert list(crit.columns) == ["id", "claim", "section", "paper_says", "paper_value", "test", "threshold", "why", "failure", "inputs"]
    assert crit.id.is_unique and set(C.RULES) <= set(crit.id)
    for r in crit.itertuples():
        assert r.claim and r.section and r.why and r.failure, r.id
        assert (r.id in C.RULES) == (r.test != "none possible here"), r.id


# ------------------------------------------------------------------ literary effect (with positive control, ablation)


def test_literary_effect():
    ctl_ok, ctl_bad = table1(lit_dz=0.9, lit_p={e: 0.001 for e in SWEEP}), table1(lit_dz=0.1, lit_p={e: 0.3 for e in SWEEP})
    assert C.rule_literary_effect(inputs()).verdict == C.UNTESTABLE  # effect, but no positive control
    o = C.rule_literary_effect(inputs(control_table1=ctl_bad))
    assert o.verdict == C.UNTESTABLE and "not detected" in o.found and "instrument not validated" in o.found
    o = C.rule_literary_effect(inputs(control_table1=ctl_ok))
    assert o.verdict == C.REPRODUCED and o.qualifier == "effect only; reasoning attribution untested"
    assert C.verdict_text(o) == "reproduced (effect only; reasoning attribution untested)"
    no_effect = table1(lit_p={**PAPER_LIT_P, 5: 0.2})
    assert C.rule_literary_effect(inputs(table1=no_effect, control_table1=ctl_ok)).verdict == C.NOT_REPRODUCED
    negative = table1(lit_delta={**PAPER_LIT_DELTA, 5: -2.0}, lit_p={**PAPER_LIT_P, 5: 0.01})
    assert C.rule_literary_effect(inputs(table1=negative, control_table1=ctl_ok)).verdict == C.NOT_REPRODUCED
    assert C.rule_literary_effect(inputs(table1=table1(epochs=(2, 3)), control_table1=ctl_ok)).verdict == C.UNTESTABLE
    # reasoning attribution: CoT items beat the ablation's item by item / do not
    cot = items(POS, NEG)
    o = C.rule_literary_effect(inputs(control_table1=ctl_ok, items=cot, ablation_items=items([v - 0.9 for v in POS], NEG)))
    assert o.verdict == C.REPRODUCED and o.qualifier == ""
    o = C.rule_literary_effect(inputs(control_table1=ctl_ok, items=cot, ablation_items=items([v + 0.5 for v in POS], NEG)))
    assert o.verdict == C.NOT_REPRODUCED
    assert C.verdict_text(o) == "not reproduced: reproduced the effect, not its attribution to the reasoning"


def test_literary_effect_control_epoch():
    ctl = table1(lit_p={**{e: 0.5 for e in SWEEP}, 12: 0.001}, epochs=SWEEP)
    assert C.rule_literary_effect(inputs(control_table1=ctl)).verdict == C.UNTESTABLE  # judged at epoch 5 by default
    assert C.rule_literary_effect(inputs(control_table1=ctl, control_epoch=12)).verdict == C.REPRODUCED
    only12 = ctl[ctl.epoch == 12]
    assert C.rule_literary_effect(inputs(control_table1=only12)).verdict == C.REPRODUCED  # its only (last) epoch


# ------------------------------------------------------------------ factual null (TOST)


def test_factual_null():
    o = C.rule_factual_null(inputs(table1=table1(fac_dz=0.02, n=200)))
    assert o.verdict == C.REPRODUCED
    o = C.rule_factual_null(inputs(table1=table1(fac_dz=0.0, fac_p=0.7)))  # n = 20, d_z = 0: TOST p = 0.0127 (±0.5)
    assert o.verdict == C.REPRODUCED and "power at d_z = 0 with n = 20: 0.44" in o.found
    o = C.rule_factual_null(inputs(table1=table1(fac_dz=0.2, fac_p=0.6)))  # n = 20: inside the bound but not shown
    assert o.verdict == C.NOT_REPRODUCED
    assert o.qualifier == "equivalence not shown; the paper's p > 0.5 reading holds"
    o = C.rule_factual_null(inputs(table1=table1(fac_dz=0.35, fac_p=0.06)))  # the lenient old rule's false pass
    assert o.verdict == C.NOT_REPRODUCED and "not met" in o.found
    assert C.rule_factual_null(inputs(table1=table1(epochs=(2, 3)))).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ domain selectivity


def test_domain_selectivity():
    o = C.rule_domain_selectivity(inputs(items=items(POS, NEG)))
    assert o.verdict == C.REPRODUCED and "Mann–Whitney" in o.found
    rng = np.random.default_rng(0)
    same = rng.normal(0, 1, 40)
    assert C.rule_domain_selectivity(inputs(items=items(list(same[:20]), list(same[20:] + 1.0)))).verdict == C.NOT_REPRODUCED
    assert C.rule_domain_selectivity(inputs()).verdict == C.UNTESTABLE  # no items, no pair scores
    assert C.rule_domain_selectivity(inputs(items=items(POS, []))).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ the sweep pattern, rising mean, factual at every epoch


def test_significance_pattern():
    assert C.rule_significance_pattern(inputs()).verdict == C.REPRODUCED  # the paper's own p-values
    assert C.rule_significance_pattern(inputs(table1=table1(lit_p={**PAPER_LIT_P, 3: 0.03}))).verdict == C.NOT_REPRODUCED
    assert C.rule_significance_pattern(inputs(table1=table1(lit_p={**PAPER_LIT_P, 12: 0.01}))).verdict == C.NOT_REPRODUCED
    assert C.rule_significance_pattern(inputs(table1=table1(epochs=(2, 4, 5, 6)))).verdict == C.UNTESTABLE


def test_literary_keeps_rising():
    assert C.rule_literary_keeps_rising(inputs()).verdict == C.REPRODUCED
    assert C.rule_literary_keeps_rising(inputs(table1=table1(lit_delta={**PAPER_LIT_DELTA, 12: 9.0}))).verdict == C.NOT_REPRODUCED
    assert C.rule_literary_keeps_rising(inputs(table1=table1(epochs=(2, 3, 4, 5)))).verdict == C.UNTESTABLE


def test_factual_null_every_epoch():
    assert C.rule_factual_null_every_epoch(inputs(table1=table1(fac_dz=-0.14))).verdict == C.REPRODUCED
    o = C.rule_factual_null_every_epoch(inputs(table1=table1(fac_dz={**{e: 0.0 for e in SWEEP}, 8: 0.15})))
    assert o.verdict == C.NOT_REPRODUCED and "epoch 8" in o.found
    t = table1(fac_dz=0.0)
    assert C.rule_factual_null_every_epoch(inputs(table1=t[t.domain == "literary"])).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ eval_loss


def losses(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, len(values) + 1), "eval_loss": values})


def test_eval_loss_monotone():
    assert C.rule_eval_loss_monotone(inputs(epochs=losses([2.7 + 0.16 * k for k in range(12)]))).verdict == C.REPRODUCED
    o = C.rule_eval_loss_monotone(inputs(epochs=losses([2.7, 2.9, 2.8, 3.0])))
    assert o.verdict == C.NOT_REPRODUCED and "[3]" in o.found
    assert C.rule_eval_loss_monotone(inputs(epochs=losses([2.7, 2.8]))).verdict == C.UNTESTABLE
    assert C.rule_eval_loss_monotone(inputs()).verdict == C.UNTESTABLE


def test_checkpoint_choice():
    rising = losses([2.7 + 0.16 * k for k in range(12)])  # lowest at epoch 1, which the sweep never scores
    o = C.rule_checkpoint_choice(inputs(epochs=rising))
    assert o.verdict == C.REPRODUCED and "lowest eval_loss at epoch 2" in o.found  # among the sweep epochs: 2 vs 5
    dip = losses([3.0, 2.9, 2.8, 2.7, 2.6, 2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3])  # lowest at 5, as Δ(ΔI)
    o = C.rule_checkpoint_choice(inputs(epochs=dip))
    assert o.verdict == C.NOT_REPRODUCED and o.qualifier == "both select the same epoch"
    none_sig = table1(lit_p={e: 0.2 + 0.01 * e for e in SWEEP})
    o = C.rule_checkpoint_choice(inputs(table1=none_sig, epochs=rising))
    assert o.verdict == C.NOT_REPRODUCED and o.qualifier.startswith("moot")
    assert C.rule_checkpoint_choice(inputs(epochs=losses([2.7]))).verdict == C.UNTESTABLE  # epoch 1 only: not in the sweep
    assert C.rule_checkpoint_choice(inputs(table1=table1(epochs=(5,)), epochs=rising)).verdict == C.UNTESTABLE  # nothing to choose


# ------------------------------------------------------------------ Δ log P (Table 2)


def table2(lit=(-0.813, -0.894, -0.731), fac=(-0.670, -0.791, -0.549), rows=C.DLOGP_ROWS, n=20) -> pd.DataFrame:
    vals = {"literary": lit, "news": (-0.609, -0.762, -0.456), "popsci": (-0.732, -0.943, -0.520), "factual combined": fac}
    return pd.DataFrame([{"domain": d, "n": n, "delta": vals[d][0], "ci_low": vals[d][1], "ci_high": vals[d][2]} for d in rows])


def test_dlogp_all_fall():
    assert C.rule_dlogp_all_fall(inputs(table2=table2())).verdict == C.REPRODUCED
    assert C.rule_dlogp_all_fall(inputs(table2=table2(fac=(-0.1, -0.3, 0.1)))).verdict == C.NOT_REPRODUCED
    o = C.rule_dlogp_all_fall(inputs(table2=table2(rows=("literary", "news", "factual combined"))))
    assert o.verdict == C.UNTESTABLE and "popsci" in o.found
    assert C.rule_dlogp_all_fall(inputs()).verdict == C.UNTESTABLE


def test_dlogp_literary_more():
    o = C.rule_dlogp_literary_more(inputs(table2=table2()))  # the paper's own rows: Welch [-0.285, -0.001]
    assert o.verdict == C.REPRODUCED and "[-0.285, -0.001]" in o.found
    assert C.rule_dlogp_literary_more(inputs(table2=table2(lit=(-0.70, -0.78, -0.62)))).verdict == C.NOT_REPRODUCED
    assert C.rule_dlogp_literary_more(inputs(table2=table2(rows=("literary", "news")))).verdict == C.UNTESTABLE
    assert C.rule_dlogp_literary_more(inputs(table2=table2(n=1))).verdict == C.UNTESTABLE


def test_dlogp_literary_more_uses_sd_column():
    rng = np.random.default_rng(1)
    a, b = rng.normal(-0.9, 0.3, 20), rng.normal(-0.6, 0.2, 20)
    base = pd.DataFrame({"id": range(40), "domain": ["literary"] * 20 + ["news"] * 20, "logp_per_token": 0.0})
    t2 = stats.delta_logp_table(base, base.assign(logp_per_token=np.r_[a, b]), unit="nats")
    o = C.rule_dlogp_literary_more(inputs(table2=t2))
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


def test_sharpening():
    up = [1.0 + 0.1 * k for k in range(12)]
    small = [0.1 * (-1) ** k for k in range(12)]
    assert C.rule_sharpening(inputs(pair_scores=pair_scores(up, small))).verdict == C.REPRODUCED
    o = C.rule_sharpening(inputs(pair_scores=pair_scores(up, [0.8 * v for v in up])))  # H(X) moves too
    assert o.verdict == C.NOT_REPRODUCED and "= 0.80" in o.found
    assert C.rule_sharpening(inputs(pair_scores=pair_scores([-v for v in up], small))).verdict == C.NOT_REPRODUCED
    assert C.rule_sharpening(inputs()).verdict == C.UNTESTABLE
    assert C.rule_sharpening(inputs(pair_scores=pair_scores(up, small, epoch=4))).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ training time


def test_training_time():
    assert C.rule_training_time(inputs(gpu_timing={"minutes": 7.5, "device": "NVIDIA H200"})).verdict == C.REPRODUCED
    o = C.rule_training_time(inputs(gpu_timing={"minutes": 30.0, "device": "NVIDIA T4", "profile": "paper"}))
    assert o.verdict == C.NOT_REPRODUCED and "T4" in o.found
    assert C.rule_training_time(inputs()).verdict == C.UNTESTABLE
    assert C.rule_training_time(inputs(gpu_timing={"minutes": 1.0, "device": "x", "profile": "cpu"})).verdict == C.UNTESTABLE


# ------------------------------------------------------------------ end to end


def test_build_claims_end_to_end():
    rng = np.random.default_rng(0)
    d_cond = list(rng.normal(3.0, 1.0, 20))
    ps = pair_scores(d_cond, [0.1] * 20)
    fac = pair_scores([0.0] * 20, [0.0] * 20).assign(domain="factual")
    fac["id"] = fac.id.str.replace("lit", "fac")
    ps = pd.concat([ps, fac], ignore_index=True)
    items, t1 = stats.delta_delta_i(ps.assign(dI=ps.dI), unit="nats")
    out = C.build_claims(t1, table2(), losses([2.7 + 0.1 * k for k in range(12)]), ps, 5, "d_z", "smoke profile")
    crit = C.criteria()
    assert list(out.id) == list(crit.id) and set(out.verdict) <= set(C.VERDICTS)
    assert list(out.columns) == ["id", "claim", "paper §", "paper reports", "this run", "verdict", "verdict_detail"]
    v = out.set_index("id").verdict
    # literary Δ(ΔI) per item = d_cond − 0.1 > 0 everywhere, factual all zero: selectivity holds, the effect lacks a control
    assert v["domain_selectivity"] == C.REPRODUCED and v["sharpening"] == C.REPRODUCED
    assert v["literary_effect"] == C.UNTESTABLE and v["training_time"] == C.UNTESTABLE and v["duality"] == C.UNTESTABLE
    assert v["significance_pattern"] == C.UNTESTABLE  # only epoch 5 was scored
    assert v["factual_null"] == C.UNTESTABLE  # factual Δ are all 0: d_z undefined
    assert out.set_index("id").loc["dataset_coverage", "this run"].startswith("No survey")
    assert "smoke profile" in out.attrs["caveats"][0] and not out["this run"].str.contains("smoke profile").any()
    lit = t1[(t1.domain == "literary")].iloc[0]
    assert f"{lit.delta:+.2f} nats" in out.set_index("id").loc["literary_effect", "this run"]
    ctl = t1.assign(d_z=1.0, wilcoxon_p=0.001)
    out2 = C.build_claims(t1, table2(), None, ps, 5, items=items, control_table1=ctl,
                          gpu_timing={"minutes": 6.0, "device": "H200"})
    v2 = out2.set_index("id")
    assert v2.loc["literary_effect", "verdict_detail"] == "reproduced (effect only; reasoning attribution untested)"
    assert v2.loc["training_time", "verdict"] == C.REPRODUCED and v2.loc["eval_loss_monotone", "verdict"] == C.UNTESTABLE


def test_summary_and_caveats():
    assert C.summary(pd.DataFrame({"verdict": [C.REPRODUCED, C.REPRODUCED, C.UNTESTABLE]})) == {C.REPRODUCED: 2, C.UNTESTABLE: 1}
    cav = C.shared_caveats("cpu profile", standin=True)
    assert len(cav) == 3 and "stand-in" in cav[1] and "cpu profile" in cav[0]
    assert len(C.shared_caveats()) == 2

"""The reproducibility summary: one page answering "what did this replication find, at what cost?".

In the form the ML Reproducibility Challenge asks for (scope, methodology, results, what was easy,
what was difficult) with a ReScience-style status line, generated from a run's saved files only:
``manifest.json``, the claims table of notebook 10, the positive control's detection (07), the
minimum detectable effect (05) and the decomposition's verdict (08). Every number on the page is
read from those files; the prose around them is fixed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from cqa_utils.method import claims as C
from cqa_utils.method.claims import PAPER_TRAIN_MIN, criteria
from cqa_utils.method.config import PAPER_REPORTED_DIR, PRIMARY_EPOCH, SWEEP_EPOCHS, get_profile
from cqa_utils.method.lora_arith import QWEN25_7B, decoder_dims
from cqa_utils.method.stats import paper_table1_holm
from cqa_utils.pipeline.artifacts import RENAMED, read_any
from cqa_utils.pipeline.preflight import gpu_memory_needed, weights_bytes
from cqa_utils.report.display import STATUS_MEANING, VERDICT_MEANING, fmt_num, fmt_p, rel_path, rel_text, verdict_label
from cqa_utils.report.markdown import md_table

#: The notebook whose cells compute the evidence each claim is judged on.
EVIDENCE = {"literary_effect": "05_delta_delta_i", "factual_null": "05_delta_delta_i", "domain_selectivity": "10_claims",
            "significance_pattern": "05_delta_delta_i", "literary_keeps_rising": "05_delta_delta_i",
            "factual_null_every_epoch": "05_delta_delta_i", "eval_loss_monotone": "03_train", "checkpoint_choice": "10_claims",
            "dlogp_all_fall": "06_delta_logp", "dlogp_literary_more": "06_delta_logp", "sharpening": "10_claims"}


def _load(run_dir: Path, stage: str, name: str) -> Any:
    """A notebook's saved file (None when that notebook did not write it)."""
    p = Path(run_dir) / "artifacts" / stage / name
    if not p.exists() and stage in RENAMED:  # a run made before the notebook was renamed
        p = Path(run_dir) / "artifacts" / RENAMED[stage] / name
    return read_any(p) if p.exists() else None


def _minutes(s: float | None) -> str:
    return "?" if s is None else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s")


def _central(claims: pd.DataFrame) -> str | None:
    """The central claim's verdict as written in the claims table (None when the table lacks it)."""
    row = claims[claims.id == "literary_effect"] if "id" in claims else claims.iloc[:0]
    return None if row.empty else str(row.verdict.iloc[0])


def status_line(claims: pd.DataFrame) -> str:
    """ReScience-style status of the central claim (literary Δ(ΔI) rises): [Re], [¬Re], inconclusive or not judged.

    A claims summary that carries its own status (``claims.summary()["status"]`` with an ``explanation``)
    is used as it is; otherwise the status follows the literary claim's verdict, old or new vocabulary.
    """
    s = C.summary(claims) if len(claims) and "central" in claims else {}
    if isinstance(s.get("status"), str):
        why = s["sentence"]  # one sentence with the status: the abstract is five sentences
        return f"**Status: {s['status']}** in this setting, because {why[0].lower()}{why[1:]}"
    v = _central(claims)
    detail = claims[claims.id == "literary_effect"].verdict_detail.iloc[0] if v is not None and "verdict_detail" in claims else v
    label = verdict_label(v) if v is not None else None
    if label is None or label == "cannot be tested here":
        return "**Status: central claim not judged here** (see its row below for why)."
    if label == "consistent":
        return f"**Status: [Re]** in this setting: the literary effect is {verdict_label(detail)} with the paper."
    if label == "inconclusive":
        return "**Status: inconclusive** in this setting: the literary test could not tell at this sample size."
    return f"**Status: [¬Re]** in this setting: the literary effect is {verdict_label(detail)} with the paper."


def _row(t1: pd.DataFrame | None, dom: str, epoch: int) -> pd.Series | None:
    if t1 is None or not len(t1):
        return None
    g = t1[(t1.domain == dom) & (t1.epoch == epoch)]
    return None if g.empty else g.iloc[0]


def _effect(r: pd.Series | None, unit: str) -> str:
    """Δ(ΔI) with its bootstrap 95 % CI, d_z and the one-sided Wilcoxon p, from a Table 1 row."""
    if r is None:
        return "this run has no such row"
    ci = (f" [95 % CI {fmt_num(r['ci_low'], 2, True)}, {fmt_num(r['ci_high'], 2, True)}]"
          if "ci_low" in r and pd.notna(r["ci_low"]) else "")
    return f"Δ(ΔI) {fmt_num(r['delta'], 2, True)} {unit}{ci}; d_z {fmt_num(r['d_z'], 2)}; p {fmt_p(r['wilcoxon_p'])}"


def _seeds(run_dir: Path, manifest: dict[str, Any]) -> list[Any]:
    """The seeds this run trained CoT adapters with (05's seed table when written, else the run's parameters)."""
    st = _load(run_dir, "05_delta_delta_i", "seed_table1.csv")
    if isinstance(st, pd.DataFrame) and "seed" in st:
        return sorted(st.seed.dropna().unique().tolist())
    seeds = (manifest.get("params") or {}).get("seeds")
    return list(seeds) if seeds else [manifest.get("seed", "?")]


def abstract(run_dir: Path, manifest: dict[str, Any], claims: pd.DataFrame | None) -> list[str]:
    """Five sentences: what was re-run and how it differs, the verdict, whether the instrument can see an
    effect, how small an effect this design can see, and the tally of verdicts; all read from the run's files."""
    t1 = _load(run_dir, "05_delta_delta_i", "table1.csv")
    unit = str(t1.unit.iloc[0]) if isinstance(t1, pd.DataFrame) and "unit" in t1 and len(t1) else "bits"
    paper = pd.read_csv(PAPER_REPORTED_DIR / "table1.csv").set_index("epoch").loc[PRIMARY_EPOCH]
    model = manifest.get("model", "?")
    kind = "the instruction-tuned " if "instruct" in str(model).lower() else ""
    paper_model = get_profile("paper", device="cuda").model_id
    data = ("stand-in data written for this replication (the paper's SNAKE-100 and its 80-item benchmark are unreleased)"
            if manifest.get("standin") else "data supplied by the user")
    seeds = _seeds(run_dir, manifest)
    lit = _row(t1, "literary", PRIMARY_EPOCH)
    out = [f"This run re-tests Zou & Xu (2026): LoRA fine-tuning on about 100 expert chain-of-thought judgments raises "
           f"the literary Δ(ΔI) (paper, epoch {PRIMARY_EPOCH}: {fmt_num(paper.literary_ddI, 2, True)}, d = "
           f"{fmt_num(paper.literary_d, 2)}, p = {fmt_p(paper.literary_wilcoxon_p)}) and leaves the factual one unchanged; "
           f"it uses {kind}{model} instead of the paper's {paper_model} base model, on {data}, with "
           f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})."]
    if claims is not None:
        out.append(status_line(claims).replace("**", "").rstrip(".") + f" (literary, epoch {PRIMARY_EPOCH}: "
                   + _effect(lit, unit) + ").")
    sens = _load(run_dir, "07_positive_control", "sensitivity.json")
    seen = _load(run_dir, "07_positive_control", "detection.json")
    if sens and sens.get("d_z") is not None:
        ci = (f" [95 % CI {fmt_num(sens['ci_low'], 2)}, {fmt_num(sens['ci_high'], 2)}]"
              if sens.get("ci_low") is not None and sens.get("ci_high") is not None else "")
        out.append(f"On items no adapter saw, the instrument {'detects' if sens.get('detected') else 'does not detect'} a "
                   f"transferred preference: the held-out positive control ({sens.get('signal', '')}) gives d_z = "
                   f"{fmt_num(sens['d_z'], 2)}{ci} (one-sided Wilcoxon p = {fmt_p(sens.get('p'))}"
                   f"{', epoch ' + str(sens['epoch']) if sens.get('epoch') is not None else ''}).")
    elif seen:
        out.append("This run has only a seen-items positive control (its adapter trained on the pairs it scores: an upper "
                   "bound), so whether the instrument can see a preference that transfers to unseen items is not known.")
    else:
        out.append("This run has no positive-control result, so whether the instrument can see an effect is not known.")
    mde = _load(run_dir, "05_delta_delta_i", "mde.json")
    if mde:
        m, pd_ = mde.get("Wilcoxon MDE (d_z, simulated)"), mde.get("paper's literary d")
        power = mde.get("Wilcoxon power at the paper's d (as d_z)")
        rel = ("above" if m > pd_ else "below") if m is not None and pd_ is not None and math.isfinite(m) else None
        out.append(f"With n = {mde['n']} items per domain the smallest effect this design detects with 80 % power is d_z = "
                   + (fmt_num(m, 2) if m is not None and math.isfinite(m) else "infinite (no outcome reaches p < 0.05)")
                   + (f", {rel} the paper's d = {fmt_num(pd_, 2)}" if rel else "")
                   + (f" (power at d = {fmt_num(pd_, 2)}: {fmt_num(power, 2)})" if power is not None and pd_ is not None else "")
                   + ", so a null result here is weak evidence of no effect.")
    else:
        out.append("This run has no minimum-detectable-effect file (notebook 05), so its power is not stated.")
    if claims is not None:
        counts = claims.verdict.map(verdict_label).value_counts()
        out.append(f"Of the {len(claims)} claims, " + ", ".join(f"{n} {w}" for w, n in counts.items())
                   + "; the table below gives each with the paper's number beside this run's.")
    return out


def claims_table(run_dir: Path, claims: pd.DataFrame) -> str:
    """The claims the run can test: short claim with a link to its evidence, paper's number, this run's, verdict.

    Readable at 1,400 px: four columns whose text wraps; the central two claims' numbers are rebuilt
    from Table 1 with their CI and unit, the others are the claims table's own wording.
    """
    t1 = _load(run_dir, "05_delta_delta_i", "table1.csv")
    unit = str(t1.unit.iloc[0]) if isinstance(t1, pd.DataFrame) and "unit" in t1 and len(t1) else "bits"
    paper = pd.read_csv(PAPER_REPORTED_DIR / "table1.csv").set_index("epoch").loc[PRIMARY_EPOCH]
    built = {"literary_effect": (f"Δ(ΔI) {fmt_num(paper.literary_ddI, 2, True)} (unit not stated); d {fmt_num(paper.literary_d, 2)}; "
                                 f"p {fmt_p(paper.literary_wilcoxon_p)}", _effect(_row(t1, "literary", PRIMARY_EPOCH), unit)),
             "factual_null": (f"Δ(ΔI) {fmt_num(paper.factual_ddI, 2, True)} (unit not stated); d {fmt_num(paper.factual_d, 2)}; "
                              f"p {fmt_p(paper.factual_p)}", _effect(_row(t1, "factual", PRIMARY_EPOCH), unit))}
    rows = []
    for r in claims.fillna("").to_dict("records"):
        if verdict_label(r["verdict"]) == "cannot be tested here":
            continue
        where = EVIDENCE.get(r["id"])
        sec = r.get("paper §") or r.get("section") or ""
        claim = f"{r['claim']} ({sec})" if sec else r["claim"]
        paper_txt, ours = built.get(r["id"], (r.get("paper reports", ""), r.get("this run", "")))
        rows.append({"claim": claim + (f" [{where[:2]}]({where}.ipynb)" if where else ""), "paper": paper_txt,
                     "this run": rel_text(ours), "verdict": verdict_label(r["verdict_detail"] or r["verdict"])})
    return md_table(pd.DataFrame(rows)) if rows else "No claim could be tested in this run."


def summary_page(run_dir: Path, manifest: dict[str, Any]) -> str:
    """The summary page in MyST Markdown, from the run's saved files; a missing file is named in one line."""
    claims = _load(run_dir, "10_claims", "claims.csv")
    caveats = _load(run_dir, "10_claims", "caveats.json") or []
    det = _load(run_dir, "07_positive_control", "detection.json")
    sens = _load(run_dir, "07_positive_control", "sensitivity.json")
    mde = _load(run_dir, "05_delta_delta_i", "mde.json")
    why = _load(run_dir, "08_decomposition", "verdict.json")
    crit = criteria().set_index("id")
    hw = manifest.get("hardware", {})
    steps = pd.DataFrame(manifest.get("steps", []))
    nbs = pd.DataFrame(manifest.get("notebooks", []))
    seeds = _seeds(run_dir, manifest)
    out = ["# Reproducibility summary\n", "## Abstract\n", " ".join(abstract(run_dir, manifest, claims)) + "\n"]
    if claims is not None:
        words = dict.fromkeys(verdict_label(v) for v in claims.verdict)
        out.append("## The claims, beside the paper\n")
        out.append(status_line(claims) + " " + STATUS_MEANING + ". Verdicts: "
                   + "; ".join(f"*{w}*: {VERDICT_MEANING.get(w, w)}" for w in words) + ".\n")
        out.append(claims_table(run_dir, claims) + "\n")
        untestable = [r["claim"] for r in claims.to_dict("records") if verdict_label(r["verdict"]) == "cannot be tested here"]
        if untestable:
            out.append("Cannot be tested here: " + "; ".join(untestable) + " (why: [notebook 10](10_claims.ipynb)).\n")
        if caveats:
            out.append("Applies to every verdict: " + " ".join(rel_text(c) for c in caveats) + "\n")
    else:
        out.append("This run has no claims table (notebook 10 did not write `claims.csv`).\n")
    out.append("## Scope: the paper's claims\n")
    out += [f"{i}. {r.claim} ({r.section})" for i, r in enumerate(crit.itertuples(), 1)]
    out.append("\nEach claim's test, threshold and what counts as failure were fixed before any result: "
               "[the claim criteria](criteria.md).\n")
    out.append("## What was run\n")
    dev = _load(run_dir, "01_data", "deviations.csv")
    precision = manifest.get("precision") or []
    has = len(steps) and "wall_s" in steps
    train_s = steps[steps.step.str.startswith("train")].wall_s.sum() if has else None
    step_s = steps.wall_s.sum() if has else None
    out += [f"- **Profile** `{manifest.get('profile')}`: {manifest.get('model')} on {manifest.get('device', 'cpu')}"
            + (f" ({precision[0]})" if precision else "") + ".",
            f"- **Data**: {'the stand-in written for this replication (not SNAKE-100)' if manifest.get('standin') else 'user files'}; "
            "files " + ", ".join(f"`{rel_path(v)}`" for v in manifest.get("data", {}).values()) + ".",
            f"- **Seeds**: {', '.join(map(str, seeds))}" + (" (one seed: no spread across seeds)." if len(seeds) == 1 else "."),
            f"- **Hardware**: {hw.get('cpu', '?')}, {hw.get('cpu_count', '?')} cores, {hw.get('memory_gib', '?')} GiB"
            + (f", GPU {hw['cuda']}" if hw.get("cuda") else ", no GPU") + ".",
            "- **Compute**: "
            + (f"the expensive steps took {_minutes(step_s)} when they were computed, {_minutes(train_s)} of it training; "
               if step_s else "")
            + f"executing the notebooks took {_minutes(manifest.get('total_wall_s'))} in this run"
            + (f" (the longest, {nbs.loc[nbs.wall_s.idxmax(), 'notebook']}, {_minutes(nbs.wall_s.max())})" if len(nbs) else "")
            + ", reusing any step computed before. Per notebook and per step: [Reproducibility](reproducibility.md).",
            f"- **Deviations from the paper**: {len(dev) if dev is not None else 'this run has no deviations file'}, each with "
            "its reason: [Deviations](deviations.md).\n"]
    out.append("## Can the instrument tell?\n")
    if sens:  # a run with the held-out controls (its detection.json is the held-out control's reading too)
        out.append(rel_text(sens["sentence"]) + " The seen-items control (trained on the pairs it scores) is shown in "
                   "notebook 07 as an upper bound and gates no verdict. ([notebook 07](07_positive_control.ipynb))")
    elif det:  # a run made before the held-out controls: its only control is the seen-items one
        out.append("Seen-items control (its adapter trained on the pairs it scores: an upper bound, gating no verdict): "
                   + rel_text(det["sentence"]) + " ([notebook 07](07_positive_control.ipynb))")
    if not (sens or det):
        out.append("This run has no positive-control result (notebook 07).")
    if mde:
        m = mde.get("Wilcoxon MDE (d_z, simulated)")
        power, paper_d = mde.get("Wilcoxon power at the paper's d (as d_z)"), mde.get("paper's literary d")
        finite = m is not None and math.isfinite(m)
        out.append(f"\nThe smallest effect this design detects with 80 % power (one-sided Wilcoxon, α = 0.05, n = {mde['n']}) is "
                   + (f"d_z = {m:.2f}" if finite else "infinite: no outcome can reach p < 0.05 at this n")
                   + " ([notebook 05](05_delta_delta_i.ipynb))"
                   + (f"; if the true effect were the paper's literary d = {paper_d:.2f}, the test would detect it "
                      f"with probability {power:.2f} only." if power is not None and paper_d is not None else ".") + "\n")
    if why:
        out.append("## Why the literary effect has the sign it has\n\n" + rel_text(why["sentence"])
                   + " ([notebook 08](08_decomposition.ipynb))\n")
    paper_prof = get_profile("paper", device="cuda")
    out.append("## What was easy\n\n"
               "- Every §3.4 hyperparameter maps onto a trl/peft setting (the Methods chapter lists them, and "
               "[How to change things](../how_to_change.md) shows where each lives).\n"
               "- The metric itself: ΔI and Δ(ΔI) are four log-probabilities per pair, scored "
               "with one prefix token and the lm-evaluation-harness boundary convention, so any other tool can "
               "recompute them.\n")
    paper_holm = paper_table1_holm(pd.read_csv(PAPER_REPORTED_DIR / "table1.csv")).set_index(["domain", "epoch"])
    ph = paper_holm.loc[("literary", PRIMARY_EPOCH)]
    dims = decoder_dims(QWEN25_7B)
    gpu_gib = sum(gpu_memory_needed(dims, get_profile("paper", device="cuda")).values()) / 2**30
    trainable = (f"; the paper reports no trainable-parameter count: the {paper_prof.expected_trainable_params:,} of its "
                 f"LoRA on {paper_prof.model_id} is computed here from the architecture, not reproduced from the paper"
                 if paper_prof.expected_trainable_params else "")
    out.append("## What was difficult\n\n"
               "- The data: SNAKE-100 and the 80-item benchmark are unreleased. The stand-in had to be written, "
               "audited for give-aways (an earlier version let training vocabulary predict the literary answers), "
               "checked blind and frozen before any model scored it; it is still not expert-elicited.\n"
               f"- The model: the paper's {paper_prof.model_id} needs a GPU and the hub; this run used {manifest.get('model')}"
               + (", far smaller and instruction-tuned, so a null here is weak evidence about the paper's setting.\n"
                  if manifest.get("profile") != "paper" else ".\n")
               + f"- What the paper leaves open: the LLaMA-Factory version and several defaults (each assumption is marked "
               f"in `cqa_utils/method/config.py`){trainable}.\n"
               f"- Statistics the paper leaves open: which Cohen's d, the unit of Δ(ΔI), the multiplicity of choosing "
               f"the best of {len(SWEEP_EPOCHS)} epochs: Holm-adjusted over them, the paper's own epoch-{PRIMARY_EPOCH} p = "
               f"{ph['Wilcoxon p (paper)']:.3f} becomes {ph['Holm p']:.3f} ([notebook 05](05_delta_delta_i.ipynb)).\n")
    out.append("## Communication with the authors\n\n"
               "What a replicator needs from the authors, and does not have: SNAKE-100 (the ~105 expert chain-of-thought "
               "judgments) and its 80-item benchmark (20 + 20 preference pairs, 20 + 20 continuation passages), both "
               "unreleased when this book was made; the unit of Δ(ΔI) and which Cohen's d Table 1 reports; the "
               "LLaMA-Factory version and configuration file. With the data, `cqa run --data-dir` re-runs every claim "
               "on it unchanged (next section).\n")
    out.append("## What a user with the real data and a GPU should expect\n\n"
               "`cqa run --profile paper --data-dir <folder with the real files>` checks first, in seconds, that a CUDA "
               f"GPU with about {gpu_gib:.0f} GiB free, {weights_bytes(dims) / 1e9:.1f} GB of disk for the weights and the hub "
               f"(or a local copy) are there. Training on one A800 took the paper {PAPER_TRAIN_MIN:.1f} min; the sweep scores "
               f"{len(SWEEP_EPOCHS)} checkpoints per adapter. With the real "
               "benchmark the positive control's calibration pairs are still the stand-in's unless "
               "`calibration/pairs.jsonl` is supplied. The verdicts then come from the same declared criteria.\n")
    return "\n".join(out)


"""Held-out controls of the instrument: would Δ(ΔI) see a preference taught on *other* items?

The paper's claim is about transfer to unseen items, so a control that scores the very pairs its
adapter was trained on only shows that an adapter raises the likelihood of strings it has seen. Here
the 40 calibration pairs are cut into ``k`` folds, stratified by domain and flaw kind
(:func:`assign_folds`); for each fold one adapter is trained, with the paper's settings, on the
*other* folds' material and scores only its own fold's pairs; the per-item Δ(ΔI) of the folds are
pooled (:func:`pool`) so that every calibration pair is scored exactly once by an adapter that never
saw it (cross-fitting). Training signals, each a control of its own:

* ``good`` (positive): context → good option;
* ``cot`` (positive): chain-of-thought judgments about the other folds' pairs, in the training
  corpus's own form (``calibration/cot_judgments.jsonl``, one row per pair, linked by ``pair_id``);
* ``bad`` (negative): context → bad option; Δ(ΔI) must *fall* on unseen pairs;
* ``neutral`` (the null control): neutral text of similar length and register (``controls/neutral.jsonl``, continuation
  rows, context → passage). Its rows do not depend on the fold, so one adapter scores all pairs; it
  shows the drift that training alone causes. (The signal is called ``neutral``, not ``null``: CSV
  readers take the string "null" for a missing value.)

``seen`` is the earlier control kept as an upper bound: one adapter trained on every pair's good
option (its 0.1 validation split aside) and scored on the same pairs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cqa_utils.method import data
from cqa_utils.method import stats as S
from cqa_utils.method.config import REPO_ROOT, STANDIN_DIR

HELD_OUT = ("good", "cot", "bad", "neutral")
LABELS = {"good": "good options (positive)", "cot": "CoT judgments (positive)", "bad": "bad options (negative)",
          "neutral": "neutral text (null)", "seen": "seen items (upper bound)"}
ROLES = {"good": "positive", "cot": "positive", "bad": "negative", "neutral": "null", "seen": "upper bound"}
SENSITIVITY_SIGNALS = {"cot": "CoT judgments", "good": "good options"}
SENSITIVITY_KEYS = ("detected", "d_z", "ci_low", "ci_high", "p", "epoch", "n", "signal", "sentence")
COLORS = {"good": "#1e8449", "cot": "#7d3c98", "bad": "#c0392b", "neutral": "#7f8c8d", "seen": "#b9770e"}

Test = Callable[[Sequence[float], Sequence[float]], dict[str, Any]]


# ------------------------------------------------------------------------------------------ files

def shown_path(path: str | Path) -> str:
    """A path as a reader should see it: relative to the repository when inside it, else its last three parts."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return "/".join(p.parts[-3:])


def cot_path(calibration: str | Path) -> Path:
    """Where the CoT judgments about the calibration pairs live: next to the pairs file."""
    return Path(calibration).parent / "cot_judgments.jsonl"


def neutral_path(calibration: str | Path) -> Path:
    """The null control's neutral text: ``<data>/controls/neutral.jsonl`` beside the calibration folder,
    else the stand-in's (neutral text does not depend on the data set)."""
    own = Path(calibration).parent.parent / "controls" / "neutral.jsonl"
    return own if own.exists() else STANDIN_DIR / "controls" / "neutral.jsonl"


def load_cot(path: str | Path, pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """CoT judgments, validated as training-corpus rows, each naming an existing calibration pair.

    Raises :class:`data.DataError` (file, line, field) for a row without a ``pair_id`` string, with
    an unknown ``pair_id``, or a second row for the same pair.
    """
    rec = data.load(path, "train")
    known, seen = {p["id"] for p in pairs}, {}
    for row, line in zip(rec.rows, rec.lines):
        pid = row.get("pair_id")
        if not isinstance(pid, str):
            raise data.DataError(rec.path, line, "pair_id", f"expected the id of a calibration pair, found {pid!r}")
        if pid not in known:
            raise data.DataError(rec.path, line, "pair_id", f"expected the id of a calibration pair, found {pid!r} "
                                 "(no such pair in the calibration file)")
        if pid in seen:
            raise data.DataError(rec.path, line, "pair_id", f"expected one judgment per pair, found a second one for "
                                 f"{pid!r} (first on line {seen[pid]})")
        seen[pid] = line
    return rec.rows


def load_neutral(path: str | Path) -> list[dict[str, Any]]:
    """Neutral passages (continuations schema: id, domain, context, passage), validated."""
    return data.load(path, "continuations").rows


# ------------------------------------------------------------------------------------------ folds

def assign_folds(pairs: Sequence[dict[str, Any]], folds: int = 2, seed: int = 42) -> dict[str, int]:
    """Pair id → fold (0..folds−1), stratified by domain and flaw kind, deterministic given ``seed``.

    Per domain, the pairs are grouped by ``flaw`` (missing: one group), the groups visited in a seeded
    order and their items (seeded order within a group) dealt to the folds in one rotation that
    continues across groups. So each fold gets ⌊n/k⌋ or ⌈n/k⌉ pairs of each domain, and a flaw kind
    with at least two items lands in at least two folds.
    """
    if folds < 2:
        raise ValueError(f"folds = {folds}: cross-fitting needs at least 2 folds")
    rng = np.random.default_rng(seed)
    by_domain: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for p in pairs:
        by_domain[p["domain"]][str(p.get("flaw", ""))].append(p["id"])
    out: dict[str, int] = {}
    for d_i, dom in enumerate(sorted(by_domain)):
        groups = by_domain[dom]
        n = sum(len(v) for v in groups.values())
        if n < folds:
            raise ValueError(f"domain {dom!r} has {n} pairs: cannot fill {folds} folds")
        turn = d_i % folds  # domains start the rotation at different folds, so odd counts even out
        for flaw in [sorted(groups)[i] for i in rng.permutation(len(groups))]:
            for i in rng.permutation(len(groups[flaw])):
                out[groups[flaw][i]] = turn
                turn = (turn + 1) % folds
    return out


def fold_balance(pairs: Sequence[dict[str, Any]], assignment: dict[str, int]) -> pd.DataFrame:
    """Pairs per (domain, flaw kind) and fold: the stratification, for the reader."""
    df = pd.DataFrame([{"domain": p["domain"], "flaw": p.get("flaw", ""), "fold": assignment[p["id"]]} for p in pairs])
    return df.pivot_table(index=["domain", "flaw"], columns="fold", aggfunc="size", fill_value=0).add_prefix("fold ")


# ------------------------------------------------------------------------------------------ training rows

def signal_rows(signal: str, pairs: Sequence[dict[str, Any]], cot: Sequence[dict[str, Any]] | None = None,
                neutral: Sequence[dict[str, Any]] | None = None) -> list[tuple[dict[str, Any], str | None]]:
    """Training rows of one signal built from ``pairs``, each with the calibration pair it comes from
    (None for neutral text, which comes from no pair)."""
    if signal in ("good", "seen"):
        return [(r, p["id"]) for r, p in zip(data.preference_rows(list(pairs)), pairs)]
    if signal == "bad":
        return [({"id": f"negcontrol-{p['id']}", "instruction": data.CONTROL_INSTRUCTION, "input": p["context"],
                  "output": p["bad"]}, p["id"]) for p in pairs]
    if signal == "cot":
        if cot is None:
            raise ValueError("the CoT-judgment control needs its judgments file (calibration/cot_judgments.jsonl)")
        ids = {p["id"] for p in pairs}
        return [(r, r["pair_id"]) for r in cot if r["pair_id"] in ids]
    if signal == "neutral":
        if neutral is None:
            raise ValueError("the null control needs its neutral text (controls/neutral.jsonl)")
        return [({"id": f"nullcontrol-{r['id']}", "instruction": data.CONTROL_INSTRUCTION, "input": r["context"],
                  "output": r["passage"]}, None) for r in neutral]
    raise ValueError(f"unknown control signal {signal!r}: expected one of {list(LABELS)}")


@dataclass
class Fit:
    """One control adapter: what it trains on and which calibration pairs it scores.

    ``trained_on`` holds the pairs whose material is in its training or validation rows. A held-out
    fit that would score one of them is refused when it is built.
    """

    signal: str
    fold: int | None
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    trained_on: frozenset[str]
    scored: list[dict[str, Any]]
    held_out: bool = True
    step_suffix: str = field(init=False)

    def __post_init__(self) -> None:
        clash = sorted(self.trained_on & {p["id"] for p in self.scored})
        if self.held_out and clash:
            raise ValueError(f"{self.signal} control, fold {self.fold}: pair(s) {clash} would be scored by an adapter "
                             "trained on them; a held-out control scores only pairs outside its training folds")
        if not self.train_rows:
            raise ValueError(f"{self.signal} control, fold {self.fold}: no training rows")
        self.step_suffix = "" if self.signal == "seen" else f"-{self.signal}" + ("" if self.fold is None else f"-f{self.fold}")

    @property
    def train_step(self) -> str:
        return f"train-control{self.step_suffix}"

    @property
    def sweep_step(self) -> str:
        return f"sweep-control{self.step_suffix}"


def _split(rows: list[tuple[dict[str, Any], str | None]], val_size: float, seed: int
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], frozenset[str]]:
    tr, va = data.split_train_val([r for r, _ in rows], val_size, seed)
    return [rows[i][0] for i in tr], [rows[i][0] for i in va], frozenset(s for _, s in rows if s is not None)


def plan(signal: str, pairs: Sequence[dict[str, Any]], folds: int = 2, seed: int = 42, val_size: float = 0.1,
         split_seed: int = 42, cot: Sequence[dict[str, Any]] | None = None,
         neutral: Sequence[dict[str, Any]] | None = None) -> list[Fit]:
    """The adapters of one control signal.

    ``good``, ``bad``, ``cot``: one fit per fold, trained on the other folds' rows (split into train and
    validation as the main run is, ``val_size`` with ``split_seed``), scoring the fold's pairs. ``neutral``:
    one fit on all neutral rows scoring every pair (its rows do not depend on the fold). ``seen``: the
    upper bound, trained on all pairs' good options and scoring the same pairs; only its training
    split counts as seen (the validation pairs were not trained on).
    """
    pairs = list(pairs)
    if signal == "seen":
        rows = signal_rows("seen", pairs)
        tr, va = data.split_train_val([r for r, _ in rows], val_size, split_seed)
        return [Fit("seen", None, [rows[i][0] for i in tr], [rows[i][0] for i in va],
                    frozenset(rows[i][1] for i in tr), pairs, held_out=False)]
    if signal == "neutral":
        tr, va, src = _split(signal_rows("neutral", pairs, neutral=neutral), val_size, split_seed)
        return [Fit("neutral", None, tr, va, src, pairs)]
    assignment = assign_folds(pairs, folds, seed)
    fits = []
    for f in range(folds):
        rest = [p for p in pairs if assignment[p["id"]] != f]
        tr, va, src = _split(signal_rows(signal, rest, cot=cot), val_size, split_seed)
        fits.append(Fit(signal, f, tr, va, src, [p for p in pairs if assignment[p["id"]] == f]))
    return fits


# ------------------------------------------------------------------------------------------ pooling

def pool(fits: Sequence[Fit], items: Sequence[pd.DataFrame], pairs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-item Δ(ΔI) of every fit, one frame, with ``signal``, ``fold`` and a per-item ``seen`` flag.

    ``items[i]`` is :func:`stats.item_deltas` of ``fits[i]``'s scores. Raises unless, per signal and
    epoch, every calibration pair appears exactly once, and unless no held-out row is seen.
    """
    if len(fits) != len(items):
        raise ValueError(f"{len(fits)} fits but {len(items)} item tables")
    frames = []
    for fit, it in zip(fits, items):
        extra = set(it.id) - {p["id"] for p in fit.scored}
        if extra:
            raise ValueError(f"{fit.signal} control, fold {fit.fold}: scores for pairs it was not meant to score: {sorted(extra)}")
        frames.append(it.assign(signal=fit.signal, fold=-1 if fit.fold is None else fit.fold,
                                seen=it.id.isin(fit.trained_on)))
    out = pd.concat(frames, ignore_index=True)
    want = sorted(p["id"] for p in pairs)
    for (sig, epoch), g in out.groupby(["signal", "epoch"]):
        if sorted(g.id) != want:
            dup = sorted(g.id[g.id.duplicated()])
            missing = sorted(set(want) - set(g.id))
            raise ValueError(f"{sig} control, epoch {epoch}: every calibration pair must be scored exactly once; "
                             f"twice: {dup}, missing: {missing}")
    held = out[out.signal != "seen"]
    if held.seen.any():
        raise ValueError(f"held-out rows scored by an adapter that saw them: {sorted(set(held.id[held.seen]))}")
    return out


# ------------------------------------------------------------------------------------------ statistics

def control_table(items: pd.DataFrame, test: Test | None = None) -> pd.DataFrame:
    """Per (signal, domain, epoch): n, mean Δ(ΔI) (bits, as ``items`` are), d_z, one-sided p for a rise
    and for a fall, the percentile bootstrap 95 % interval of the mean, and whether items were seen.

    ``test(lora, base)`` is the paired test of notebook 05 (:func:`stats.paired_tests`): ``p_rise`` is
    its Wilcoxon p for lora > base, ``p_fall`` the same test with the arguments swapped (base > lora).
    """
    test = test or S.paired_tests  # looked up at call time: an edit of stats.paired_tests reaches here
    rows = []
    for (sig, dom, epoch), g in items.groupby(["signal", "domain", "epoch"], sort=True):
        lora, base = g.dI_lora.to_numpy(), g.dI_base.to_numpy()
        rise, fall = test(lora, base), test(base, lora)
        lo, hi = S.bootstrap_ci(lora - base)
        rows.append({"signal": sig, "label": LABELS.get(sig, sig), "role": ROLES.get(sig, ""), "domain": dom,
                     "epoch": int(epoch), "n": len(g), "mean_ddI_bits": float(np.mean(lora - base)),
                     "d_z": float(rise["d_z"]), "p_rise": float(rise["wilcoxon_p"]), "p_fall": float(fall["wilcoxon_p"]),
                     "ci_low": lo, "ci_high": hi, "seen": bool(g.seen.any()),
                     "wilcoxon_method": rise.get("wilcoxon_method", "")})
    return pd.DataFrame(rows)


def table1(items: pd.DataFrame, signal: str, test: Test | None = None, unit: str = "bits") -> pd.DataFrame:
    """Table 1's columns (per epoch and domain, ``test``'s full output plus Holm over epochs) for one signal,
    the form the claims' gate reads."""
    test = test or S.paired_tests  # looked up at call time: an edit of stats.paired_tests reaches here
    g = items[items.signal == signal]
    rows = [{"epoch": int(e), "domain": d, **test(x.dI_lora.to_numpy(), x.dI_base.to_numpy())}
            for (e, d), x in g.groupby(["epoch", "domain"], sort=True)]
    t = pd.DataFrame(rows)
    if len(t):
        t["holm_p"] = t.groupby("domain").wilcoxon_p.transform(lambda p: S.holm(p.to_numpy()))
        t["unit"] = unit
    return t


def bootstrap_dz_ci(x: Sequence[float], level: float = 0.95, n_boot: int = S.N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of d_z = mean/sd (items resampled with replacement, seeded).

    Resamples whose sd is 0 (all draws the same item) have no d_z and are left out.
    """
    x = np.asarray(x, float)
    if x.size < 2:
        return math.nan, math.nan
    b = x[np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))]
    sd = b.std(1, ddof=1)
    dz = b.mean(1)[sd > 0] / sd[sd > 0]
    if dz.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(dz, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float, np.floating)) and math.isfinite(float(x)) for x in xs)


def sensitivity(items: pd.DataFrame, epoch: int = 5, domain: str = "literary", test: Test | None = None,
                mde: Callable[[int], float] = S.wilcoxon_mde, alpha: float = S.ALPHA) -> dict[str, Any]:
    """The instrument's sensitivity on unseen items, as one computed sentence (and its numbers).

    From the pooled held-out rows (``seen`` False) of ``domain`` at ``epoch``: d_z and the one-sided
    Wilcoxon p of ``test`` (notebook 05's), d_z's percentile bootstrap 95 % interval over items
    (:func:`bootstrap_dz_ci`), and the smallest d_z detectable with 80 % power at this n (``mde``).
    ``detected`` is p < ``alpha`` and d_z > 0; it is None (and the numbers None) when nothing could be
    computed (no rows, or a d_z or p that is not finite).

    The signal is the CoT judgments when that control was run, else the good options: the CoT
    judgments are the paper's mechanism (reasoning about *other* items' decisions transferring to a
    preference on unseen ones), while good options only teach continuations of the same kind.

    Keys, exactly: detected, d_z, ci_low, ci_high, p, epoch, n, signal ("CoT judgments" or "good
    options"), sentence.
    """
    test = test or S.paired_tests  # looked up at call time: an edit of stats.paired_tests reaches here
    held = items[~items.seen.astype(bool)] if "seen" in items else items
    at = held[(held.domain == domain) & (held.epoch == epoch)]
    sig = "cot" if (at.signal == "cot").any() else "good"
    g = at[at.signal == sig]
    name = SENSITIVITY_SIGNALS[sig]
    ctl = "CoT-judgment control" if sig == "cot" else "good-option control"
    n = int(len(g))
    res = test(g.dI_lora.to_numpy(), g.dI_base.to_numpy()) if n >= 2 else {}
    dz, p = res.get("d_z", math.nan), res.get("wilcoxon_p", math.nan)
    if not _finite(dz, p):
        why = (f"no held-out {domain} rows of the {ctl} at epoch {epoch}" if n == 0 else
               f"n = {n} {domain} pairs give no finite d_z and p")
        return {"detected": None, "d_z": None, "ci_low": None, "ci_high": None, "p": None, "epoch": int(epoch), "n": n,
                "signal": name, "sentence": f"The instrument's sensitivity on unseen items could not be computed: {why}."}
    lo, hi = bootstrap_dz_ci(g.ddI.to_numpy())
    detected = bool(p < alpha and dz > 0)
    m = mde(n)
    mde_txt = (f"the smallest effect detectable with 80 % power at n = {n} is d_z = {m:.2f}" if math.isfinite(m) else
               f"at n = {n} no effect is detectable with 80 % power")
    sentence = (f"On unseen items the pipeline {'detects' if detected else 'does not detect'} a transferred preference "
                f"{'of' if detected else '(observed'} d_z = {dz:.2f} [95 % CI {lo:.2f}, {hi:.2f}]{'' if detected else ')'} "
                f"at epoch {epoch} ({ctl}, n = {n} {domain} pairs, one-sided Wilcoxon p = {p:.2g}); {mde_txt}.")
    return {"detected": detected, "d_z": float(dz), "ci_low": lo, "ci_high": hi, "p": float(p), "epoch": int(epoch),
            "n": n, "signal": name, "sentence": sentence}


# ------------------------------------------------------------------------------------------ figure

def controls_figure(table: pd.DataFrame, primary_epoch: int = 5) -> go.Figure:
    """Positive, negative, null and seen controls side by side: mean Δ(ΔI) with its 95 % interval per
    signal and domain at ``primary_epoch`` (left), and d_z per epoch per signal, one panel per domain."""
    doms = [d for d in ("literary", "factual") if d in set(table.domain)] or sorted(set(table.domain))
    fig = make_subplots(rows=1, cols=1 + len(doms), horizontal_spacing=0.08,
                        subplot_titles=[f"mean Δ(ΔI) at epoch {primary_epoch}, 95 % CI"] + [f"d_z per epoch, {d}" for d in doms])
    order = [s for s in ("good", "cot", "bad", "neutral", "seen") if s in set(table.signal)]
    at = table[table.epoch == primary_epoch]
    marks = {"literary": "circle", "factual": "diamond"}
    shift = {d: 0.12 * (j - (len(doms) - 1) / 2) for j, d in enumerate(doms)}  # domains side by side at each control
    for j, dom in enumerate(doms):
        g = at[at.domain == dom].set_index("signal").reindex(order).dropna(subset=["mean_ddI_bits"])
        fig.add_trace(go.Scatter(
            x=[order.index(s) + shift[dom] for s in g.index], y=g.mean_ddI_bits, mode="markers",
            name=f"{dom} pairs (mean, 95 % CI)", customdata=[LABELS[s] for s in g.index],
            marker=dict(symbol=marks.get(dom, "circle"), size=10, color="#34495e" if j == 0 else "#85929e"),
            error_y=dict(type="data", symmetric=False, array=g.ci_high - g.mean_ddI_bits, arrayminus=g.mean_ddI_bits - g.ci_low),
            hovertemplate="%{customdata}<br>mean Δ(ΔI) = %{y:.2f} bits<extra>" + dom + "</extra>"), row=1, col=1)
    fig.update_xaxes(tickvals=list(range(len(order))), ticktext=[LABELS[s].replace(" (", "<br>(") for s in order], row=1, col=1,
                     title_text="control (training signal)")
    for j, dom in enumerate(doms):
        for s in order:
            g = table[(table.domain == dom) & (table.signal == s)].sort_values("epoch")
            fig.add_trace(go.Scatter(x=g.epoch, y=g.d_z, mode="lines+markers", name=LABELS[s], legendgroup=s,
                                     showlegend=j == 0, line=dict(color=COLORS[s], dash="dot" if s == "seen" else "solid"),
                                     customdata=np.c_[g.p_rise, g.p_fall],
                                     hovertemplate="epoch %{x}<br>d_z = %{y:.2f}<br>p (rise) = %{customdata[0]:.3g}"
                                                   "<br>p (fall) = %{customdata[1]:.3g}<extra>" + LABELS[s] + "</extra>"),
                          row=1, col=2 + j)
    for c in range(1, 2 + len(doms)):
        fig.add_hline(y=0, line=dict(color="grey", dash="dot"), row=1, col=c)
        if c > 1:
            fig.update_xaxes(title_text="epoch (of 12)", row=1, col=c)
            fig.update_yaxes(title_text="d_z (mean/sd of Δ(ΔI), no unit)", row=1, col=c)
    fig.update_yaxes(title_text="mean Δ(ΔI) (bits)", row=1, col=1)
    fig.update_layout(title="Held-out controls: positive (good options, CoT judgments), negative (bad options), null "
                            "(neutral text) and the seen-items upper bound; each pair scored by an adapter that never saw it "
                            "(except the upper bound)",
                      template="plotly_white", legend=dict(orientation="h", y=-0.28), height=560, title_font_size=13,
                      margin=dict(b=150))
    return fig

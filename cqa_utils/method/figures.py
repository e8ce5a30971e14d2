"""Plotly figures for the book (Figure 1, Figure 2, eval_loss vs Δ(ΔI), per-item scatter, ...).

Every function takes the run's tables and returns a ``plotly.graph_objects.Figure`` with a title and
every axis titled with its unit in parentheses; the paper's reported points are overlaid where the paper
gives them. The ``*_caption`` functions write what a figure shows, its unit and n, and what to look at.
:func:`figure_problems` checks a figure (or its JSON) for a title and unit-labelled axes.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cqa_utils.method.stats import binary_entropy_bits, softmax
from cqa_utils.method.stats import dz_ci as stats_dz_ci

COLORS = {"literary": "#c0392b", "factual": "#2471a3", "news": "#2471a3", "popsci": "#17a589"}


def dz_ci(d_z: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """:func:`cqa_utils.method.stats.dz_ci`, or (NaN, NaN) where d_z is undefined or n < 2 (no bar is drawn)."""
    return stats_dz_ci(d_z, n, level) if n and n > 1 and math.isfinite(d_z) else (math.nan, math.nan)


def figure1(table1: pd.DataFrame, paper: pd.DataFrame | None, d_col: str = "d_z",
            title: str = "Figure 1 — effect size d_z of Δ(ΔI) over training epochs") -> go.Figure:
    """d_z (or ``d_col``) of Δ(ΔI) over epochs, literary vs factual: this run with its 95 % CI per epoch (noncentral-t
    interval of d_z, :func:`dz_ci`; drawn for d_z only), the paper's reported d as open diamonds (if given)."""
    fig = go.Figure()
    for dom in ("literary", "factual"):
        g = table1[table1.domain == dom].sort_values("epoch")
        if g.empty:
            continue
        ci = np.array([dz_ci(d, int(n)) for d, n in zip(g[d_col], g.n)]) if d_col == "d_z" else None
        err = (dict(type="data", symmetric=False, array=ci[:, 1] - g[d_col].to_numpy(), arrayminus=g[d_col].to_numpy() - ci[:, 0],
                    thickness=1.2, width=4) if ci is not None else None)
        fig.add_trace(go.Scatter(x=g.epoch, y=g[d_col], mode="lines+markers", name=f"{dom}, this run (95 % CI)",
                                 line=dict(color=COLORS[dom]), error_y=err,
                                 customdata=np.c_[g.wilcoxon_p, g.delta],
                                 hovertemplate="epoch %{x}<br>d=%{y:.2f}<br>Wilcoxon p=%{customdata[0]:.2g}"
                                               "<br>Δ(ΔI)=%{customdata[1]:.2f}<extra></extra>"))
        col = "literary_d" if dom == "literary" else "factual_d"
        if paper is None:
            continue
        fig.add_trace(go.Scatter(x=paper.epoch, y=paper[col], mode="markers", name=f"{dom}, paper (reported d)",
                                 marker=dict(symbol="diamond-open", size=11, color=COLORS[dom])))
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_layout(title=title, xaxis_title="training epoch (checkpoint)",
                      yaxis_title=f"{d_col} (standard deviations of Δ(ΔI))", template="plotly_white",
                      legend=dict(orientation="h", y=-0.2))
    return fig


def figure1_caption(table1: pd.DataFrame, paper: pd.DataFrame | None, d_col: str = "d_z") -> str:
    """What Figure 1 shows, its unit and n, and what to look at."""
    n = sorted(set(int(x) for x in table1.n)) if "n" in table1 else []
    ci = ("Bars: 95 % confidence intervals of d_z from the noncentral t distribution (exact for normally distributed "
          "differences), one per epoch and domain. " if d_col == "d_z" else "")
    return (f"**Figure 1.** Effect size {d_col} of Δ(ΔI) (mean of the per-item change divided by its standard deviation; "
            f"no unit) at each checkpoint, literary and factual pairs, n = {', '.join(map(str, n)) or '?'} items per domain. "
            + ci + ("Open diamonds: the paper's reported d (which d it is, the paper does not say). " if paper is not None else "")
            + "Look at whether the literary curve stays above the factual one and above 0 with its interval clear of 0.")


def _log_odds(pair_scores: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Per (model, item): log-odds of good against bad with the context (log P(good|y) − log P(bad|y)) and
    without it (log P(good) − log P(bad)), summed over tokens, in ``unit``."""
    f = 1 / math.log(2) if unit == "bits" else 1.0
    return pair_scores.assign(with_context=(pair_scores.logp_cond_good - pair_scores.logp_cond_bad) * f,
                              without_context=(pair_scores.logp_uncond_good - pair_scores.logp_uncond_bad) * f)


def preference_shift(pair_scores: pd.DataFrame, epoch: int, unit: str = "bits") -> pd.DataFrame:
    """For every item: the preference for good over bad, with and without the context, base and at ``epoch``.

    Columns: id, domain, context ("with context" / "without context"), base, tuned (log-odds good − bad,
    ``unit``), change = tuned − base. The "with" change minus the "without" change is the item's Δ(ΔI).
    """
    lo = _log_odds(pair_scores, unit)
    base = lo[lo.model == "base"].set_index("id")
    tuned = lo[(lo.model != "base") & (lo.epoch == epoch)].set_index("id")
    if tuned.empty:
        raise ValueError(f"epoch {epoch} was not scored (have {sorted(set(lo.epoch) - {0})})")
    b = base.loc[tuned.index]
    rows = []
    for ctx, col in (("with context", "with_context"), ("without context", "without_context")):
        rows.append(pd.DataFrame({"id": tuned.index, "domain": tuned.domain.to_numpy(), "context": ctx,
                                  "base": b[col].to_numpy(), "tuned": tuned[col].to_numpy()}))
    out = pd.concat(rows, ignore_index=True)
    return out.assign(change=out.tuned - out.base)


def figure2(shift: pd.DataFrame, epoch: int, unit: str = "bits") -> go.Figure:
    """What the paper's schematic Figure 2 claims, measured: per item, base → fine-tuned preference for the good
    option, with the context (left) and without it (right), one row of panels per domain; thin grey lines are items,
    the thick line their mean."""
    doms = [d for d in ("literary", "factual") if d in set(shift.domain)]
    fig = make_subplots(rows=len(doms), cols=2, shared_yaxes=True, vertical_spacing=0.16, horizontal_spacing=0.06,
                        subplot_titles=[f"{d}: {c}" for d in doms for c in ("with context", "without context")])
    xs = ["base", f"epoch {epoch}"]
    for r, dom in enumerate(doms, 1):
        for c, ctx in enumerate(("with context", "without context"), 1):
            g = shift[(shift.domain == dom) & (shift.context == ctx)]
            for _, it in g.iterrows():
                fig.add_trace(go.Scatter(x=xs, y=[it.base, it.tuned], mode="lines+markers", showlegend=False,
                                         line=dict(color="#b3b6b7", width=1), marker=dict(size=4), name=it.id,
                                         hovertemplate=f"{it.id}<br>%{{x}}: %{{y:.1f}} {unit}<extra></extra>"), row=r, col=c)
            fig.add_trace(go.Scatter(x=xs, y=[g.base.mean(), g.tuned.mean()], mode="lines+markers",
                                     name=f"{dom}: mean of {len(g)} items", showlegend=c == 1,
                                     line=dict(color=COLORS[dom], width=4), marker=dict(size=9)), row=r, col=c)
            fig.add_hline(y=0, line=dict(color="grey", dash="dot"), row=r, col=c)
        fig.update_yaxes(title_text=f"log P(good) − log P(bad) ({unit})", row=r, col=1)
    for r in range(1, len(doms) + 1):
        for c in (1, 2):
            fig.update_xaxes(title_text="model (checkpoint)", row=r, col=c)
            if c == 2:
                fig.update_yaxes(title_text=f"({unit})", row=r, col=c)
    fig.update_layout(title=f"Figure 2 — preference for the good option, base vs epoch {epoch}, with and without context",
                      template="plotly_white", height=380 * len(doms), margin=dict(t=110),
                      legend=dict(orientation="h", y=-0.12))
    return fig


def figure2_caption(shift: pd.DataFrame, epoch: int, unit: str = "bits") -> str:
    """What Figure 2 shows and how it tests the paper's schematic, with the mean changes read from ``shift``."""
    m = shift.groupby(["domain", "context"]).change.agg(["mean", "count"])
    parts = "; ".join(f"{d}: {fmt_signed(m.loc[(d, 'with context'), 'mean'])} with context, "
                      f"{fmt_signed(m.loc[(d, 'without context'), 'mean'])} without"
                      for d in ("literary", "factual") if (d, "with context") in m.index and (d, "without context") in m.index)
    n = int(m["count"].max()) if len(m) else 0
    return (f"**Figure 2.** The paper's Figure 2 is a schematic with no data: fine-tuning should make the model prefer the "
            f"constraint-satisfying (good) option *given the context* while leaving its context-free preference alone. "
            f"Here that is measured for all {n} items per domain: each grey line is one item's log-odds of good against bad, "
            f"log P(good) − log P(bad) summed over the option's tokens, in {unit}, from the base model (left end) to the "
            f"epoch-{epoch} checkpoint (right end); left panels with the context y, right panels without it. The thick "
            f"line is the mean. Mean change ({unit}): {parts}. The paper's picture holds when the left panel's literary "
            f"line rises and the right one stays flat; the difference of the two changes is the item's Δ(ΔI).")


def fmt_signed(x: float) -> str:
    """A signed number to 2 decimals with a true minus sign."""
    return f"{x:+.2f}".replace("-", "−")


def _two_candidate(r: pd.Series, cond: bool) -> dict[str, float]:
    """P over {good, bad} from per-token mean log-probs, its entropy (bits) and the good−bad log-odds."""
    kind = "cond" if cond else "uncond"
    g, b = r[f"logp_{kind}_good"], r[f"logp_{kind}_bad"]
    ng, nb = r["n_tokens_good"], r["n_tokens_bad"]
    p = softmax([g / ng, b / nb])
    return {"P(good)": p[0], "P(bad)": p[1], "entropy bits": binary_entropy_bits([g / ng, b / nb]),
            "log-odds per token (nats)": g / ng - b / nb, "log-odds summed (nats)": g - b}


def candidate_distributions(pair_scores: pd.DataFrame, item_id: str, epoch: int) -> pd.DataFrame:
    """One item's two-candidate distribution without and with its context, base vs ``epoch``.

    Each candidate's score is its mean log-prob per token (summed log-probs of two candidates differ by
    tens of nats and put all the mass on one); the two are normalised to a distribution. Rows: (model,
    context) with context "without" (entropy = H(X)) and "with" (entropy = H(X|Y)); columns P(good),
    P(bad), entropy bits, log-odds per token (nats), log-odds summed (nats).
    """
    rows = []
    tuned = (pair_scores.model != "base") & (pair_scores.epoch == epoch)
    for label, sel in (("base", pair_scores.model == "base"), (f"epoch {epoch}", tuned)):
        g = pair_scores[sel & (pair_scores.id == item_id)]
        if g.empty:
            raise ValueError(f"item {item_id!r} has no {label} scores")
        for cond in (False, True):
            rows.append({"model": label, "context": "with" if cond else "without", **_two_candidate(g.iloc[0], cond)})
    return pd.DataFrame(rows)


def entropy_summary(pair_scores: pd.DataFrame, epoch: int, domain: str = "literary") -> pd.DataFrame:
    """Mean H(X) and H(X|Y) (bits, per-token two-candidate distributions) over a domain's items, base vs ``epoch``."""
    ids = pair_scores[(pair_scores.domain == domain) & (pair_scores.model == "base")].id
    d = pd.concat([candidate_distributions(pair_scores, i, epoch).assign(id=i) for i in ids], ignore_index=True)
    out = d.groupby(["model", "context"], sort=False)["entropy bits"].mean().unstack("context")
    return out.rename(columns={"without": "mean H(X) bits", "with": "mean H(X|Y) bits"}).reset_index()


def eval_loss_vs_ddi(epochs: pd.DataFrame, table1: pd.DataFrame, paper_loss: pd.DataFrame) -> go.Figure:
    """§6.6: eval_loss per epoch (left axis, nats/token) against literary and factual mean Δ(ΔI) (right axis, in
    Table 1's unit); the two axes keep their own round ticks."""
    unit = str(table1["unit"].iloc[0]) if "unit" in table1 and len(table1) else "bits"
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=epochs.epoch, y=epochs.eval_loss, name="eval_loss (this run)", mode="lines+markers",
                             line=dict(color="black")), secondary_y=False)
    fig.add_trace(go.Scatter(x=paper_loss.epoch, y=paper_loss.eval_loss, name="eval_loss (paper endpoints)",
                             mode="markers", marker=dict(symbol="x", size=10, color="black")), secondary_y=False)
    for dom in ("literary", "factual"):
        g = table1[table1.domain == dom].sort_values("epoch")
        fig.add_trace(go.Scatter(x=g.epoch, y=g.delta, name=f"Δ(ΔI) {dom}", mode="lines+markers",
                                 line=dict(color=COLORS[dom], dash="dash")), secondary_y=True)
    fig.update_layout(title="eval_loss against Δ(ΔI) over epochs (§6.6)", template="plotly_white",
                      legend=dict(orientation="h", y=-0.2), xaxis_title="training epoch (checkpoint)")
    fig.update_yaxes(title_text="eval_loss (nats/token)", secondary_y=False, tickmode="auto", nticks=8, tickformat=".1f")
    fig.update_yaxes(title_text=f"mean Δ(ΔI) ({unit})", secondary_y=True, tickmode="auto", nticks=8, tickformat=".0f",
                     showgrid=False, zeroline=True)
    return fig


def item_scatter(items: pd.DataFrame, epoch: int, unit: str) -> go.Figure:
    """Per-item ΔI before vs after fine-tuning at one epoch; points above the diagonal gained."""
    g = items[items.epoch == epoch]
    fig = go.Figure()
    for dom in ("literary", "factual"):
        d = g[g.domain == dom]
        fig.add_trace(go.Scatter(x=d.dI_base, y=d.dI_lora, mode="markers", name=dom, text=d.id,
                                 marker=dict(color=COLORS[dom], size=9),
                                 hovertemplate="%{text}<br>base ΔI=%{x:.2f}<br>LoRA ΔI=%{y:.2f}<extra></extra>"))
    lo, hi = float(np.nanmin(g[["dI_base", "dI_lora"]].to_numpy())), float(np.nanmax(g[["dI_base", "dI_lora"]].to_numpy()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="no change", line=dict(color="grey", dash="dot")))
    fig.update_layout(title=f"Per-item ΔI, base vs epoch {epoch} ({unit})", xaxis_title=f"ΔI of the base model ({unit})",
                      yaxis_title=f"ΔI at epoch {epoch} ({unit})", template="plotly_white")
    return fig


def histogram(values: pd.Series, title: str, xlabel: str, color: str | None = None, nbins: int = 30,
              count_label: str = "count (items)") -> go.Figure:
    """A plain histogram; ``xlabel`` should carry its unit in parentheses."""
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, marker_color=color or "#5d6d7e"))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=count_label, template="plotly_white", bargap=0.05)
    return fig


def loss_curves(epochs: pd.DataFrame, paper_loss: pd.DataFrame) -> go.Figure:
    """Per-epoch mean train loss and eval_loss, with the paper's eval_loss endpoints."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs.epoch, y=epochs.train_loss, name="train loss (mean over epoch)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=epochs.epoch, y=epochs.eval_loss, name="eval_loss (11-sample split)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=paper_loss.epoch, y=paper_loss.eval_loss, name="paper eval_loss", mode="markers",
                             marker=dict(symbol="x", size=11)))
    fig.update_layout(title="Training and validation loss per epoch", xaxis_title="training epoch (checkpoint)",
                      yaxis_title="loss (nats/token)",
                      template="plotly_white")
    return fig


def bars(df: pd.DataFrame, x: str, y: str, title: str, ylabel: str, color: str | None = None,
         xlabel: str | None = None) -> go.Figure:
    """A bar chart of one column against another; ``ylabel`` / ``xlabel`` should carry their unit in parentheses."""
    fig = go.Figure(go.Bar(x=df[x], y=df[y], marker_color=color or "#5d6d7e", text=df[y].round(2), textposition="auto"))
    fig.update_layout(title=title, yaxis_title=ylabel, xaxis_title=xlabel or f"{x} (category)", template="plotly_white")
    return fig


_UNIT = re.compile(r"\([^()]*\S[^()]*\)|\[[^\[\]]*\S[^\[\]]*\]")


def _text(t: Any) -> str:
    if isinstance(t, dict):
        return str(t.get("text") or "")
    return str(t or "")


def figure_problems(fig: go.Figure | dict[str, Any], caption: str = "") -> list[str]:
    """Why a figure is not fit for the book ([] when it is): no title and no ``caption``, or an axis that shows
    data without a title holding its unit in parentheses or brackets. Takes a figure or its plotly JSON."""
    spec = fig.to_plotly_json() if isinstance(fig, go.Figure) else fig
    layout = spec.get("layout", {})
    problems = [] if _text(layout.get("title")).strip() or caption.strip() else ["no title and no caption"]
    used = set()
    for tr in spec.get("data", []):
        if tr.get("type", "scatter") in ("pie", "table", "sankey"):
            continue
        used.add("xaxis" + str(tr.get("xaxis", "x"))[1:])
        used.add("yaxis" + str(tr.get("yaxis", "y"))[1:])
    for ax in sorted(used):
        target = str(layout.get(ax, {}).get("matches") or "")  # a facet's axis shares the titled one it matches
        title = _text(layout.get(ax, {}).get("title")) or (_text(layout.get(ax[0] + "axis" + target[1:], {}).get("title"))
                                                          if target else "")
        if not title.strip():
            problems.append(f"{ax} has no title")
        elif not _UNIT.search(title):
            problems.append(f"{ax} title {title!r} names no unit in parentheses or brackets")
    return problems

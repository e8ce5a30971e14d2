"""Plotly figures for the book (Figure 1, Figure 2, eval_loss vs Δ(ΔI), per-item scatter, ...).

Every function takes the run's tables and returns a ``plotly.graph_objects.Figure``; the paper's
reported points are overlaid where the paper gives them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .stats import binary_entropy_bits, softmax

COLORS = {"literary": "#c0392b", "factual": "#2471a3", "news": "#2471a3", "popsci": "#17a589"}


def figure1(table1: pd.DataFrame, paper: pd.DataFrame, d_col: str = "d_z") -> go.Figure:
    """Cohen's d of Δ(ΔI) over epochs, literary vs factual, this run (lines) and the paper (markers)."""
    fig = go.Figure()
    for dom in ("literary", "factual"):
        g = table1[table1.domain == dom].sort_values("epoch")
        fig.add_trace(go.Scatter(x=g.epoch, y=g[d_col], mode="lines+markers", name=f"{dom} (this run, {d_col})",
                                 line=dict(color=COLORS[dom]),
                                 customdata=np.c_[g.wilcoxon_p, g.delta],
                                 hovertemplate="epoch %{x}<br>d=%{y:.2f}<br>Wilcoxon p=%{customdata[0]:.3f}"
                                               "<br>Δ(ΔI)=%{customdata[1]:.2f}<extra></extra>"))
        col = "literary_d" if dom == "literary" else "factual_d"
        fig.add_trace(go.Scatter(x=paper.epoch, y=paper[col], mode="markers", name=f"{dom} (paper)",
                                 marker=dict(symbol="diamond-open", size=11, color=COLORS[dom])))
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_layout(title="Figure 1 — Cohen's d of Δ(ΔI) over training epochs", xaxis_title="epoch",
                      yaxis_title="Cohen's d", template="plotly_white", legend=dict(orientation="h", y=-0.2))
    return fig


def candidate_distributions(pair_scores: pd.DataFrame, item_id: str, epoch: int) -> pd.DataFrame:
    """P over {good, bad} with and without the context, before and after fine-tuning, with entropies (bits)."""
    rows = []
    for label, sel in (("base", pair_scores.model == "base"), (f"epoch {epoch}", pair_scores.epoch == epoch)):
        r = pair_scores[sel & (pair_scores.id == item_id)].iloc[0]
        cond = [r.logp_cond_good, r.logp_cond_bad]
        unc = [r.logp_uncond_good, r.logp_uncond_bad]
        pc, pu = softmax(cond), softmax(unc)
        rows.append({"model": label, "P(good|y)": pc[0], "P(bad|y)": pc[1], "P(good)": pu[0], "P(bad)": pu[1],
                     "H(X|Y) bits": binary_entropy_bits(cond), "H(X) bits": binary_entropy_bits(unc)})
    return pd.DataFrame(rows)


def figure2(dist: pd.DataFrame, item_id: str) -> go.Figure:
    """Candidate distribution of one benchmark item before/after fine-tuning, annotated with H(X) and H(X|Y)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("without context: P(x)", "with context y: P(x|y)"))
    for k, (label, r) in enumerate(dist.set_index("model").iterrows()):
        color = ["#7f8c8d", "#c0392b"][k]
        fig.add_trace(go.Bar(x=["good", "bad"], y=[r["P(good)"], r["P(bad)"]], name=f"{label}: H(X)={r['H(X) bits']:.3f} bits",
                             marker_color=color, opacity=0.85), row=1, col=1)
        fig.add_trace(go.Bar(x=["good", "bad"], y=[r["P(good|y)"], r["P(bad|y)"]],
                             name=f"{label}: H(X|Y)={r['H(X|Y) bits']:.3f} bits", marker_color=color,
                             marker_pattern_shape="/", opacity=0.85), row=1, col=2)
    fig.update_layout(title=f"Figure 2 — candidate distribution of item {item_id} before and after fine-tuning",
                      barmode="group", yaxis_title="probability (normalised over the two candidates)",
                      template="plotly_white", legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(range=[0, 1])
    return fig


def eval_loss_vs_ddi(epochs: pd.DataFrame, table1: pd.DataFrame, paper_loss: pd.DataFrame) -> go.Figure:
    """§6.6: eval_loss per epoch (left axis) against literary and factual Δ(ΔI) (right axis)."""
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
                      legend=dict(orientation="h", y=-0.2), xaxis_title="epoch")
    fig.update_yaxes(title_text="eval_loss (nats/token)", secondary_y=False)
    fig.update_yaxes(title_text="mean Δ(ΔI)", secondary_y=True)
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
    fig.update_layout(title=f"Per-item ΔI, base vs epoch {epoch} ({unit})", xaxis_title=f"ΔI base ({unit})",
                      yaxis_title=f"ΔI LoRA ({unit})", template="plotly_white")
    return fig


def histogram(values: pd.Series, title: str, xlabel: str, color: str | None = None, nbins: int = 30) -> go.Figure:
    """A plain histogram."""
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, marker_color=color or "#5d6d7e"))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title="count", template="plotly_white", bargap=0.05)
    return fig


def loss_curves(epochs: pd.DataFrame, paper_loss: pd.DataFrame) -> go.Figure:
    """Per-epoch mean train loss and eval_loss, with the paper's eval_loss endpoints."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs.epoch, y=epochs.train_loss, name="train loss (mean over epoch)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=epochs.epoch, y=epochs.eval_loss, name="eval_loss (11-sample split)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=paper_loss.epoch, y=paper_loss.eval_loss, name="paper eval_loss", mode="markers",
                             marker=dict(symbol="x", size=11)))
    fig.update_layout(title="Training and validation loss per epoch", xaxis_title="epoch", yaxis_title="nats/token",
                      template="plotly_white")
    return fig


def bars(df: pd.DataFrame, x: str, y: str, title: str, ylabel: str, color: str | None = None) -> go.Figure:
    """A bar chart of one column against another."""
    fig = go.Figure(go.Bar(x=df[x], y=df[y], marker_color=color or "#5d6d7e", text=df[y].round(2), textposition="auto"))
    fig.update_layout(title=title, yaxis_title=ylabel, template="plotly_white")
    return fig

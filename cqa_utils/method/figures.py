"""Plotly figures for the book (Figure 1, Figure 2, eval_loss vs Δ(ΔI), per-item scatter, ...).

Every function takes the run's tables and returns a ``plotly.graph_objects.Figure``; the paper's
reported points are overlaid where the paper gives them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cqa_utils.method.stats import binary_entropy_bits, softmax

COLORS = {"literary": "#c0392b", "factual": "#2471a3", "news": "#2471a3", "popsci": "#17a589"}


def figure1(table1: pd.DataFrame, paper: pd.DataFrame | None, d_col: str = "d_z",
            title: str = "Figure 1 — Cohen's d of Δ(ΔI) over training epochs") -> go.Figure:
    """Cohen's d of Δ(ΔI) over epochs, literary vs factual, this run (lines) and the paper (markers, if given)."""
    fig = go.Figure()
    for dom in ("literary", "factual"):
        g = table1[table1.domain == dom].sort_values("epoch")
        fig.add_trace(go.Scatter(x=g.epoch, y=g[d_col], mode="lines+markers", name=f"{dom} (this run, {d_col})",
                                 line=dict(color=COLORS[dom]),
                                 customdata=np.c_[g.wilcoxon_p, g.delta],
                                 hovertemplate="epoch %{x}<br>d=%{y:.2f}<br>Wilcoxon p=%{customdata[0]:.3f}"
                                               "<br>Δ(ΔI)=%{customdata[1]:.2f}<extra></extra>"))
        col = "literary_d" if dom == "literary" else "factual_d"
        if paper is None:
            continue
        fig.add_trace(go.Scatter(x=paper.epoch, y=paper[col], mode="markers", name=f"{dom} (paper)",
                                 marker=dict(symbol="diamond-open", size=11, color=COLORS[dom])))
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_layout(title=title, xaxis_title="epoch",
                      yaxis_title="Cohen's d", template="plotly_white", legend=dict(orientation="h", y=-0.2))
    return fig


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


def figure2(dist: pd.DataFrame, item_id: str) -> go.Figure:
    """One item's candidate distribution without and with context, base vs fine-tuned, and the log-odds."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("without context: P(x), H(X)", "with context y: P(x|y), H(X|Y)",
                                                       "log-odds good − bad (nats/token)"))
    for k, (label, g) in enumerate(dist.groupby("model", sort=False)):
        color = ["#7f8c8d", "#c0392b"][k % 2]
        for col, ctx in ((1, "without"), (2, "with")):
            r = g[g.context == ctx].iloc[0]
            fig.add_trace(go.Bar(x=["good", "bad"], y=[r["P(good)"], r["P(bad)"]], marker_color=color, opacity=0.85,
                                 name=f"{label}: {'H(X)' if col == 1 else 'H(X|Y)'} = {r['entropy bits']:.3f} bits",
                                 marker_pattern_shape="" if col == 1 else "/"), row=1, col=col)
        fig.add_trace(go.Bar(x=list(g.context), y=list(g["log-odds per token (nats)"]), marker_color=color, opacity=0.85,
                             name=f"{label}: log-odds", showlegend=False), row=1, col=3)
    fig.update_layout(title=f"Figure 2 — candidate distribution of item {item_id}, base vs fine-tuned",
                      barmode="group", template="plotly_white", legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(range=[0, 1], title_text="probability (two candidates, per-token scores)", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="context", row=1, col=3)
    return fig


def figure2_caption(dist: pd.DataFrame, item_id: str) -> str:
    """How this figure relates to the paper's schematic Figure 2, with the item's entropies."""
    h = {(r.model, r.context): r["entropy bits"] for _, r in dist.iterrows()}
    models = list(dict.fromkeys(dist.model))
    vals = "; ".join(f"{m}: H(X) = {h[(m, 'without')]:.3f}, H(X|Y) = {h[(m, 'with')]:.3f} bits" for m in models)
    return (f"The paper's Figure 2 is a schematic with no data: after fine-tuning, P(x|y) concentrates on the "
            f"constraint-satisfying candidate, so H(X|Y) falls while H(X) stays. Here are the same quantities for "
            f"benchmark item {item_id} and its two candidates. Each candidate is scored by its mean log-prob per token "
            f"(summed log-probs differ by tens of nats between candidates of different length and would put all the "
            f"mass on one), and the two scores are normalised into a distribution, without the context (entropy "
            f"H(X)) and after it (H(X|Y)); with two candidates an entropy is at most 1 bit. {vals}. The right panel "
            f"shows the good − bad log-odds per token. The paper's picture holds for this item when the fine-tuned "
            f"H(X|Y) is lower than the base one, on the good side, while H(X) barely moves; one item is an "
            f"illustration, the claims table tests the pattern over all literary items.")


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

"""Tables as the book shows them: no index column, effect sizes to 2–3 decimals, p-values to 2 significant
figures, units in the headers, a dash (never NaN) for a missing value, nothing truncated.

The notebooks call :func:`show` in their display cells; :func:`table1_by_domain` lays out Table 1 beside the
paper as the paper lays it out (one table per domain, epochs as rows).
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from cqa_utils.report.display import fmt_p, fmt_value

#: A column holds p-values when its name is "p", ends in "p" or "_p" as a word, or starts with "p ".
_P_COL = re.compile(r"(^|[\s_(])p($|[\s_)])|p_value|_p_|holm")


def is_p_column(name: Any) -> bool:
    """Whether a column name says it holds p-values (e.g. ``wilcoxon_p``, ``Holm p``, ``p paper``)."""
    return bool(_P_COL.search(str(name).lower()))


def cell(v: Any, p: bool = False, digits: int = 3) -> str:
    """One cell as text: p-values to 2 significant figures, other floats to ``digits`` decimals, a dash for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if p and isinstance(v, (int, float)) and not isinstance(v, bool):
        return fmt_p(float(v))
    if isinstance(v, float):
        if v != 0 and abs(v) >= 1e5:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}".replace("-", "−")
    if isinstance(v, (bool, list, tuple, dict)):
        return fmt_value(v)
    return fmt_value(v) if isinstance(v, str) else str(v)


def formatted(df: pd.DataFrame, digits: int = 3, digits_by: dict[str, int] | None = None) -> pd.DataFrame:
    """``df`` with every cell formatted by :func:`cell` (strings), the index dropped."""
    out = df.reset_index(drop=True).copy()
    for c in out.columns:
        d = (digits_by or {}).get(c, digits)
        out[c] = [cell(v, is_p_column(c), d) for v in out[c].tolist()]
    return out


def show(df: pd.DataFrame, digits: int = 3, caption: str | None = None, digits_by: dict[str, int] | None = None) -> Any:
    """A DataFrame for display: formatted cells, no index column, wrapped text, an optional caption."""
    sty = formatted(df, digits, digits_by).style.hide(axis="index")
    sty = sty.set_table_styles([{"selector": "td, th", "props": "white-space: normal; text-align: right; padding: 0.25em 0.6em;"}])
    return sty.set_caption(caption) if caption else sty


def table1_by_domain(side: pd.DataFrame, unit: str) -> dict[str, pd.DataFrame]:
    """Table 1 beside the paper, one table per domain as the paper lays it out: epoch rows; Δ(ΔI), the one-sided
    Wilcoxon p and d, each paper then this run (Holm-adjusted p beside). ``side``: ``stats.side_by_side_table1``."""
    out = {}
    for dom in ("literary", "factual"):
        cols = {"epoch": "epoch", f"{dom} Δ(ΔI) paper": "Δ(ΔI) paper (unit not stated)", f"{dom} Δ(ΔI)": f"Δ(ΔI) this run ({unit})",
                f"{dom} p paper": "p paper", f"{dom} p": "p this run", f"{dom} Holm p": "Holm p this run",
                f"{dom} d paper": "d paper", f"{dom} d_z": "d_z this run"}
        have = [c for c in cols if c in side]
        t = side[have].rename(columns=cols)
        out[dom] = formatted(t, 2, {"epoch": 0})
    return out

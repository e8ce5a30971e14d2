"""Markdown for the pages the book renders from saved files."""

from __future__ import annotations

import pandas as pd


def md_table(df: pd.DataFrame) -> str:
    """A MyST (pipe) table; cells escaped."""
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    head = "| " + " | ".join(map(esc, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])

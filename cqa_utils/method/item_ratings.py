"""Exploratory rows from blind item ratings: does a result depend on items a reader finds easy?

Two readers rated every benchmark pair blind to any score (``benchmark/item_ratings.csv``, see the
datasheet): whether the context itself entails the fact the bad option contradicts (then ΔI partly
measures consistency with the context, not knowledge or taste), and how subtle the bad option is (1–3).
The grouping was declared before any score was split by it:

* **context-entailed**: either reader said yes (the conservative exclusion set);
* **subtlety**: the mean of the two ratings, grouped obvious (< 1.5), attentive reader (1.5–2.4) and
  subtle (≥ 2.5).

These rows are sensitivity analyses: they are shown beside the verdicts and never change one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from cqa_utils.method.data import DataError
from cqa_utils.method.stats import mann_whitney_greater, wilcoxon_greater

RATINGS_FILE = "item_ratings.csv"
COLUMNS = ("id", "domain", "entails_a", "entails_b", "subtlety_a", "subtlety_b")
SUBTLETY_GROUPS = ("obvious", "attentive reader", "subtle")
MIN_TEST_N = 5  # below this many items a group's mean is shown without a test


def load_ratings(path: str | Path, pair_ids: set[str] | None = None) -> pd.DataFrame:
    """Read and validate the ratings file; errors name file, line and field.

    Returns one row per item with the derived columns ``entailed`` (bool) and ``subtlety`` (group name).
    ``pair_ids``, when given, must be exactly the ids rated.
    """
    path = Path(path)
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, 1, missing[0], f"missing column (expected {', '.join(COLUMNS)})")
        for line, r in enumerate(reader, start=2):
            for c in ("entails_a", "entails_b"):
                if r[c].strip().lower() not in ("yes", "no"):
                    raise DataError(path, line, c, f"expected yes or no, got {r[c]!r}")
            for c in ("subtlety_a", "subtlety_b"):
                if r[c].strip() not in ("1", "2", "3"):
                    raise DataError(path, line, c, f"expected 1, 2 or 3, got {r[c]!r}")
            if r["domain"] not in ("literary", "factual"):
                raise DataError(path, line, "domain", f"expected literary or factual, got {r['domain']!r}")
            rows.append({"id": r["id"], "domain": r["domain"],
                         "entailed": "yes" in (r["entails_a"].strip().lower(), r["entails_b"].strip().lower()),
                         "subtlety_mean": (int(r["subtlety_a"]) + int(r["subtlety_b"])) / 2})
    out = pd.DataFrame(rows)
    if pair_ids is not None and set(out.id) != set(pair_ids):
        extra, lack = sorted(set(out.id) - set(pair_ids)), sorted(set(pair_ids) - set(out.id))
        raise DataError(path, None, "id", f"ratings do not match the benchmark: unknown {extra[:3]}, unrated {lack[:3]}")
    out["subtlety"] = [subtlety_group(m) for m in out.subtlety_mean]
    return out


def subtlety_group(mean_rating: float) -> str:
    """The declared group of a mean subtlety rating."""
    return SUBTLETY_GROUPS[0] if mean_rating < 1.5 else SUBTLETY_GROUPS[1] if mean_rating < 2.5 else SUBTLETY_GROUPS[2]


def _summary(label: str, x: np.ndarray, unit: str) -> dict[str, object]:
    row: dict[str, object] = {"analysis": label, "n": int(x.size), f"mean Δ(ΔI) ({unit})": float(x.mean()) if x.size else np.nan}
    if x.size >= MIN_TEST_N:
        row["d_z"] = float(x.mean() / x.std(ddof=1))
        row["Wilcoxon p (one-sided)"] = wilcoxon_greater(x)["wilcoxon_p"]
    return row


def exploratory_rows(items: pd.DataFrame, ratings: pd.DataFrame, epoch: int, unit: str = "bits") -> pd.DataFrame:
    """Factual Δ(ΔI) and domain selectivity with and without context-entailed items, literary Δ(ΔI) by subtlety.

    ``items`` is the per-item table of :func:`cqa_utils.method.stats.delta_delta_i` (columns epoch, id,
    domain, ddI). Groups with fewer than :data:`MIN_TEST_N` items get a mean and no test.
    """
    it = items[items.epoch == epoch].merge(ratings[["id", "entailed", "subtlety"]], on="id", how="left", validate="1:1")
    if it.entailed.isna().any():
        raise ValueError(f"unrated items at epoch {epoch}: {', '.join(it.id[it.entailed.isna()][:3])}")
    lit, fac = it[it.domain == "literary"], it[it.domain == "factual"]
    fac_kept = fac[~fac.entailed.astype(bool)]
    rows = [_summary("factual, all items", fac.ddI.to_numpy(), unit),
            _summary("factual, context-entailed items removed", fac_kept.ddI.to_numpy(), unit)]
    for label, f in (("literary − factual (difference of means), all items", fac),
                     ("literary − factual (difference of means), entailed factual items removed", fac_kept)):
        if len(lit) and len(f):
            mw = mann_whitney_greater(lit.ddI.to_numpy(), f.ddI.to_numpy())
            rows.append({"analysis": label, "n": f"{len(lit)} + {len(f)}",
                         f"mean Δ(ΔI) ({unit})": float(lit.ddI.mean() - f.ddI.mean()),
                         "Mann–Whitney p (one-sided)": mw["p"]})
    for g in SUBTLETY_GROUPS:
        rows.append(_summary(f"literary, bad option {g}", lit.ddI[lit.subtlety == g].to_numpy(), unit))
    out = pd.DataFrame(rows)
    out.insert(0, "epoch", epoch)
    return out

"""Blind item ratings: loading with file:line:field errors, the declared grouping, and the exploratory rows
checked against brute-force enumeration (independent of scipy)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from cqa_utils.method import item_ratings as R
from cqa_utils.method.config import STANDIN_DIR
from cqa_utils.method.data import DataError, load

RATINGS = STANDIN_DIR / "benchmark" / R.RATINGS_FILE
HEADER = "id,domain,entails_a,entails_b,subtlety_a,subtlety_b,reason_a,reason_b\n"


def test_standin_ratings_cover_the_benchmark_with_the_datasheet_counts():
    ids = {r["id"] for r in load(STANDIN_DIR / "benchmark" / "pairs.jsonl", "pairs").rows}
    r = R.load_ratings(RATINGS, ids)
    counts = r.groupby("domain").agg(entailed=("entailed", "sum"), n=("id", "size"))
    assert counts.loc["factual"].tolist() == [7, 20] and counts.loc["literary"].tolist() == [3, 20]
    groups = r.groupby(["domain", "subtlety"]).size().to_dict()
    assert groups == {("factual", "obvious"): 3, ("factual", "attentive reader"): 12, ("factual", "subtle"): 5,
                      ("literary", "obvious"): 2, ("literary", "attentive reader"): 16, ("literary", "subtle"): 2}


@pytest.mark.parametrize("mean,group", [(1.0, "obvious"), (1.5, "attentive reader"), (2.0, "attentive reader"),
                                        (2.5, "subtle"), (3.0, "subtle")])
def test_declared_subtlety_groups(mean, group):
    assert R.subtlety_group(mean) == group


@pytest.mark.parametrize("line,field", [("p1,literary,maybe,no,1,1,a,b\n", "entails_a"), ("p1,literary,no,no,1,4,a,b\n", "subtlety_b"),
                                        ("p1,poetry,no,no,1,1,a,b\n", "domain")])
def test_bad_rating_names_file_line_and_field(tmp_path, line, field):
    p = tmp_path / "r.csv"
    p.write_text(HEADER + "p0,factual,no,yes,2,3,a,b\n" + line)
    with pytest.raises(DataError, match=rf"r.csv:3: {field}:"):
        R.load_ratings(p)


def test_ratings_must_match_the_benchmark_ids(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text(HEADER + "p0,factual,no,yes,2,3,a,b\n")
    with pytest.raises(DataError, match="unrated"):
        R.load_ratings(p, {"p0", "p1"})


def _brute_wilcoxon_greater(x: np.ndarray) -> float:
    """P(W+ >= observed) over all 2^n sign assignments of the ranks (no ties in the test data)."""
    ranks = pd.Series(np.abs(x)).rank().to_numpy()
    w = ranks[x > 0].sum()
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(x))]
    return sum(s >= w - 1e-9 for s in sums) / len(sums)


def _brute_mw_greater(x: np.ndarray, y: np.ndarray) -> float:
    """P(U >= observed) over all relabellings of the pooled sample (no ties)."""
    pooled = np.concatenate([x, y])
    u = lambda a, b: sum((ai > bj) for ai in a for bj in b)  # noqa: E731
    obs = u(x, y)
    hits = tot = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        a = pooled[list(idx)]
        b = np.delete(pooled, list(idx))
        hits += u(a, b) >= obs
        tot += 1
    return hits / tot


def test_exploratory_rows_by_hand():
    lit = [3.0, -1.0, 4.5, 2.0, 6.0, -0.5]
    fac = [0.7, -2.2, 1.1, -0.3, 2.9, -1.6]
    items = pd.DataFrame({"epoch": 5, "id": [f"l{i}" for i in range(6)] + [f"f{i}" for i in range(6)],
                          "domain": ["literary"] * 6 + ["factual"] * 6, "ddI": lit + fac})
    ratings = pd.DataFrame({"id": items.id, "entailed": [False] * 6 + [True, False, False, True, False, False],
                            "subtlety": ["obvious", "attentive reader"] * 3 + ["subtle"] * 6})
    out = R.exploratory_rows(items, ratings, 5).set_index("analysis")
    fac_all, kept = np.array(fac), np.array([fac[i] for i in (1, 2, 4, 5)])
    assert out.loc["factual, all items", "n"] == 6
    assert math.isclose(out.loc["factual, all items", "mean Δ(ΔI) (bits)"], sum(fac) / 6)
    assert math.isclose(out.loc["factual, all items", "d_z"], fac_all.mean() / fac_all.std(ddof=1))
    assert math.isclose(out.loc["factual, all items", "Wilcoxon p (one-sided)"], _brute_wilcoxon_greater(fac_all))
    assert out.loc["factual, context-entailed items removed", "n"] == 4  # below MIN_TEST_N: mean only, no test
    assert math.isclose(out.loc["factual, context-entailed items removed", "mean Δ(ΔI) (bits)"], kept.mean())
    assert pd.isna(out.loc["factual, context-entailed items removed", "Wilcoxon p (one-sided)"])
    sel = out.loc["literary − factual (difference of means), entailed factual items removed"]
    assert math.isclose(sel["Mann–Whitney p (one-sided)"], _brute_mw_greater(np.array(lit), kept))
    assert math.isclose(sel["mean Δ(ΔI) (bits)"], np.mean(lit) - kept.mean())
    assert out.loc["literary, bad option obvious", "n"] == 3 and out.loc["literary, bad option subtle", "n"] == 0


def test_unrated_items_are_refused():
    items = pd.DataFrame({"epoch": [5], "id": ["x"], "domain": ["factual"], "ddI": [1.0]})
    with pytest.raises(ValueError, match="unrated items at epoch 5: x"):
        R.exploratory_rows(items, pd.DataFrame({"id": ["y"], "entailed": [False], "subtlety": ["obvious"]}), 5)

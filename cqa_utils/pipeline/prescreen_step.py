"""The §3.3.1 KL prescreen on the base model as one cached step: ``ranking.parquet``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cqa_utils.method.config import Profile
from cqa_utils.method.prescreen import prescreen
from cqa_utils.method.scoring import Scorer
from cqa_utils.pipeline.artifacts import write_table


def rank_decision_points(out: Path, profile: Profile, rows: list[dict[str, Any]], rank_by: str,
                         progress: Callable[[str], None] = print) -> None:
    """Score every decision's candidates with the base model and rank the decision points."""
    scorer = Scorer.for_profile(profile)
    progress(f"scoring the candidates of {sum('decision' in r for r in rows)} decision points")
    ranking = prescreen(scorer, rows, rank_by)
    write_table(Path(out) / "ranking.parquet", ranking)

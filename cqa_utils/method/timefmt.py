"""Durations as the progress lines and the dry run print them."""

from __future__ import annotations


def clock_text(seconds: float) -> str:
    """45s, 4m05s, 2h03m."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"

"""Open the built book's figure pages in headless Chromium and check that every plotly figure drew.

``python -m cqa_utils.report.browser_check _build/html`` exits 1 when a page has fewer drawn figures
(``svg.main-svg`` roots created by plotly.js) than it should, or when Chromium is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cqa_utils.report.book import FIGURE_PAGES

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=15000", "--dump-dom"]


def drawn_figures(page: Path, chromium: str) -> int:
    """Number of plotly figures that rendered an SVG in the page after its scripts ran."""
    with tempfile.TemporaryDirectory() as prof:
        out = subprocess.run([chromium, *FLAGS, f"--user-data-dir={prof}", page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    # each figure creates one <div class="plot-container plotly"> with its main SVG inside
    return len(re.findall(r'class="plot-container plotly"', out.stdout))


def check(html: Path) -> list[str]:
    """Problems found (empty when every figure page draws all its figures)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return ["chromium not found (apt-get install chromium)"]
    problems = []
    perf = html / "book" / "run" / "performance.html"  # its figure count follows the benchmark results file
    extra = {"performance": len(re.findall(r"Plotly\.newPlot\(", perf.read_text(errors="replace")))} if perf.exists() else {}
    for name, expected in {**FIGURE_PAGES, **extra}.items():
        page = html / "book" / "run" / f"{name}.html"
        n = drawn_figures(page, chromium) if page.exists() else 0
        print(f"{page.name}: {n} figure(s) drawn (expected ≥ {expected})")
        if n < expected:
            problems.append(f"{page.name}: {n} figures drawn, expected at least {expected}")
    return problems


def main() -> int:
    html = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    problems = check(html)
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

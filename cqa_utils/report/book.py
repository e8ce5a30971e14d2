"""Build the HTML book from the latest published run (no re-execution) and check its figures.

Pages that summarise a run (deviations, reproducibility, performance) and the claim criteria are
rendered as MyST pages from saved files; nothing about the run is recomputed at build time.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import plotly
import plotly.graph_objects as go

from cqa_utils.method import scoring, stats
from cqa_utils.method.claims import criteria
from cqa_utils.method.config import PAPER, REPO_ROOT, PaperHParams
from cqa_utils.pipeline.artifacts import atomic_write, write_json
from cqa_utils.pipeline.reference import REFERENCE_DIR
from cqa_utils.pipeline.run import NOTEBOOKS, publish
from cqa_utils.report.display import fmt_value, rel_path, rel_text
from cqa_utils.report.markdown import md_table
from cqa_utils.report.summary import summary_page

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book/intro.md", "book/methods.md", "book/reliability.md", "book/how_to_change.md")
FIGURE_PAGES = {"01_data": 2, "02_kl_prescreen": 2, "03_train": 1, "05_delta_delta_i": 1, "06_delta_logp": 1,
                "07_positive_control": 1, "08_decomposition": 2, "09_scale": 1,
                "10_claims": 3}


def _fmt(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    return df.apply(lambda c: c.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else v))


def render_pages(run_dir: Path, manifest: dict[str, Any], book_run: Path) -> dict[str, int]:
    """Write the pages that summarise a run into ``book_run`` (``<root>/book/run``) from saved files only.

    Nothing is recomputed here: the deviations were computed by notebook 01 while the run ran, the
    manifest by ``cqa run``, the claim criteria are a data file of the repository. Returns
    {page: number of plotly figures} for the pages rendered here.
    """
    art = Path(run_dir) / "artifacts"
    label = (book_run / "REFERENCE.md").read_text() + "\n" if (book_run / "REFERENCE.md").exists() else ""
    page = summary_page(run_dir, manifest)
    if label:  # the first screen keeps the verdict: one line on top, the full reference-run note after the claims
        page = page.replace("\n", "\n\n*This page shows the reference run shipped with the repository; its commit, machine and "
                            "what changed since are in the note below the claims.*\n", 1)
        page = page.replace("\n## Scope", "\n" + label + "\n## Scope", 1)
    atomic_write(book_run / "summary.md", lambda p: p.write_text(page))
    crit = criteria()[["id", "claim", "section", "paper_value", "test", "threshold", "why", "failure"]]
    page = ("# Claim criteria, declared before the results\n\nEach claim of the paper that this replication tests, the test, "
            "the threshold and what counts as failure, fixed in `data/claims_criteria.csv` before any result was computed. "
            "The verdicts are in the last chapter of the pipeline (notebook 10).\n\n" + md_table(crit) + "\n")
    atomic_write(book_run / "criteria.md", lambda p: p.write_text(page))
    dev = pd.read_csv(art / "01_data" / "deviations.csv")
    page = (f"# Deviations from the paper\n\n{label}Every difference between this run and the paper's setup, and why, as computed "
            "by notebook 01 on the machine that ran it (`cqa_utils.method.deviations`); the paper's §3.4 hyperparameters are "
            "otherwise reproduced exactly (notebook 03 prints them side by side).\n\n" + md_table(dev.fillna("").map(rel_text)) + "\n")
    atomic_write(book_run / "deviations.md", lambda p: p.write_text(page))
    nb = pd.DataFrame(manifest["notebooks"])
    st = pd.DataFrame(manifest.get("steps", []))
    ver = pd.DataFrame(sorted(manifest["versions"].items()), columns=["package", "version"])
    hw = pd.DataFrame(sorted((k, fmt_value(v)) for k, v in manifest["hardware"].items()), columns=["", "value"])
    git = manifest.get("git") or {}
    params = manifest.get("params") or {}
    nb = nb.rename(columns={"wall_s": "wall time (s)"})
    st = st.drop(columns=[c for c in ("function", "key") if c in st]).rename(columns={"wall_s": "compute time (s)"})
    if "reused" in st:
        st["reused"] = st.reused.map({True: "yes", False: "no"})
    page = (f"# Reproducibility\n\n{label}From `manifest.json` of the run in `{rel_path(manifest.get('run_dir', '?'))}` "
            f"(finished {str(manifest.get('finished', '?')).replace('T', ' ')}).\n\n"
            f"- profile: **{manifest['profile']}** ({manifest['model']}); seed {manifest.get('seed', '?')}\n"
            f"- git commit: `{git.get('commit')}`{' (with uncommitted changes)' if git.get('dirty') else ''}\n"
            f"- data: {', '.join(f'`{rel_path(v)}`' for v in manifest.get('data', {}).values())}\n"
            "- parameters: " + (", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in params.items()) if params
                                else "the notebooks' defaults (none set on the command line)") + "\n"
            + "".join(f"- preflight: {rel_text(c)}\n" for c in manifest.get("preflight", []))
            + f"- total wall time: {manifest['total_wall_s']:.0f} s\n\n"
            "To re-run exactly this: `cqa run --profile " + manifest["profile"] + "` then `cqa book`.\n\n"
            f"## Wall time per notebook\n\n{md_table(_fmt(nb, 1))}\n\n"
            "## Expensive steps computed or reused\n\nEvery notebook is re-executed on each run; an expensive step (training, "
            "scoring, the prescreen) is reused when its key matches its last complete run. The key hashes the step's "
            "arguments (data by content, settings, model provenance) and the source of its module and of every package "
            "module that module imports. A reused step shows the wall time of its original computation.\n\n"
            f"{md_table(_fmt(st, 1)) if len(st) else '(none)'}\n\n"
            f"## Package versions\n\n{md_table(ver)}\n\n## Hardware\n\n{md_table(hw)}\n")
    atomic_write(book_run / "reproducibility.md", lambda p: p.write_text(page))
    atomic_write(book_run / "sources.md", lambda p: p.write_text(sources_page()))
    perf, n_figs = performance_page(manifest)
    atomic_write(book_run / "performance.md", lambda p: p.write_text(perf))
    return {"performance": n_figs}


#: The functions the notebooks call for the test, the scoring convention and the settings, shown in full in the
#: "How to change things" chapter (their source is read when the book is built, so it never goes stale).
SOURCE_SHOWN = ((stats.paired_tests, "the per-domain paired tests behind Table 1 (notebook 05)"),
                (stats.wilcoxon_greater, "the one-sided Wilcoxon signed-rank test"),
                (stats.item_deltas, "per-pair ΔI and Δ(ΔI) from the four log-probabilities"),
                (scoring.split_boundary, "the context/continuation boundary convention of the scoring"),
                (scoring.pair_requests, "the four log-probabilities scored per benchmark pair"))


def hparams_table() -> pd.DataFrame:
    """Every §3.4 setting: its name, the paper's value and where the value comes from (the field's help)."""
    return pd.DataFrame([{"setting": f.name, "value": fmt_value(getattr(PAPER, f.name)), "source": f.metadata.get("help", "")}
                         for f in dataclasses.fields(PaperHParams)])


def sources_page() -> str:
    """The generated part of the "How to change things" chapter: the settings table and the source of the key
    functions, read from the package when the book is built."""
    out = ["## The settings and where each comes from\n",
           "The paper's §3.4 values as `cqa_utils/method/config.py` declares them (`PaperHParams`); *assumption* marks "
           "a value the paper does not state.\n", md_table(hparams_table()) + "\n",
           "## The source of the functions the notebooks call\n"]
    for fn, what in SOURCE_SHOWN:
        path = Path(inspect.getsourcefile(fn)).resolve().relative_to(REPO_ROOT)
        line = inspect.getsourcelines(fn)[1]
        out.append(f"### `{fn.__module__}.{fn.__name__}`\n\n{what.capitalize()}; `{path}`, line {line}.\n\n"
                   f"```python\n{inspect.getsource(fn).rstrip()}\n```\n")
    return "\n".join(out)


RESULTS_DIR = REPO_ROOT / "bench" / "results"
RESULTS_FORMAT = 2  # the `cqa bench` results format this page reads (see bench/bench.py)
SECTION_ORDER = ("scoring", "sweep", "training", "e2e")
MET = {True: "yes", False: "no", None: "not measured"}


def results_files() -> tuple[list[tuple[dict[str, Any], Path]], list[Path]]:
    """The results files this page can read, oldest first by the date recorded inside them (file times change
    on checkout), and the files in another format."""
    ok, other = [], []
    for p in sorted(RESULTS_DIR.glob("*.json")):
        res = json.loads(p.read_text())
        (ok.append((res, p)) if isinstance(res, dict) and res.get("format") == RESULTS_FORMAT else other.append(p))
    return sorted(ok, key=lambda f: (f[0].get("date", ""), f[1].name)), other


def newest_sections() -> list[tuple[dict[str, Any], Path, dict[str, Any]]]:
    """Each section, by its id, from the newest results file that measured it (an empty section measured
    nothing): (section, file, the file's results), in :data:`SECTION_ORDER`, unknown ids after."""
    found: dict[str, tuple[dict[str, Any], Path, dict[str, Any]]] = {}
    for res, path in results_files()[0]:
        for sec in res.get("sections", []):
            if sec.get("rows"):
                found[sec["id"]] = (sec, path, res)
    rank = {sid: k for k, sid in enumerate(SECTION_ORDER)}
    return sorted(found.values(), key=lambda f: (rank.get(f[0]["id"], len(rank)), f[0]["id"]))


def short_commit(res: dict[str, Any]) -> str:
    """A results file's code commit, 7 characters (``+changes`` when uncommitted changes were measured)."""
    git = res.get("git") or {}
    return f"{git['commit'][:7]}{'+changes' if git.get('dirty') else ''}" if git.get("commit") else "unknown commit"


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def current_commit() -> str | None:
    """The checkout's commit (7 characters), or None outside a git checkout."""
    out = _git("rev-parse", "HEAD")
    return out.stdout.strip()[:7] if out and out.returncode == 0 and out.stdout.strip() else None


def same_code(measured: str, head: str) -> bool | None:
    """Whether commits ``measured`` and ``head`` differ only in benchmark results, the shipped reference run and
    Markdown text (a results file, and the notes on it, are committed after the commit it measured); None when git
    cannot tell."""
    if measured == head:
        return True
    out = _git("diff", "--quiet", measured, head, "--", ".", ":(exclude)bench/results", ":(exclude)reference_run",
               ":(exclude)*.md")
    return None if out is None or out.returncode not in (0, 1) else out.returncode == 0


def currency_note(res: dict[str, Any], path: Path, head: str | None) -> str:
    """Which file is the newest, its commit, and whether the book's code is still that commit."""
    measured = short_commit(res)
    text = (f"**Newest results file: `bench/results/{path.name}`**, measured {res.get('date', '')} at code commit "
            f"`{measured}` on {machine_text(res)}.")
    if head is None:
        return text + " The book's own commit is unknown (not a git checkout).\n\n"
    same = same_code(measured.split("+")[0], head)
    if same:
        return text + (f" The book's code (commit `{head}`) is the code it measured"
                       + (", but the file measured uncommitted changes on top of it." if "+" in measured else ".")) + "\n\n"
    why = "the code has changed since" if same is False else "git cannot tell whether the code changed since"
    return text + (f" The book is built from commit `{head}`: {why}, so these numbers describe "
                   f"commit `{measured}`, not necessarily the current code; run `cqa bench` to measure it.\n\n")


def machine_text(res: dict[str, Any]) -> str:
    """The machine and code a results file came from, in words."""
    m = res.get("machine", {})
    bf16 = {True: ", native bf16", False: ", no native bf16"}.get(res.get("native_bf16"), "")
    gpu = f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU"
    git = res.get("git") or {}
    code = f", code {git['commit'][:7]}{'+changes' if git.get('dirty') else ''}" if git.get("commit") else ""
    return f"{m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores{bf16}{gpu}{code})"


def goal_table(sections: list[dict[str, Any]]) -> pd.DataFrame:
    """The goals recorded with these sections, with the verdicts the bench wrote (none is judged here)."""
    return pd.DataFrame([{"goal": g["goal"], "measured": g["measured"], "met": MET[g["met"]]}
                         for sec in sections for g in sec.get("goals", [])])


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return " / ".join(_cell(x) for x in v)
    if isinstance(v, dict):  # e.g. op-time shares in %: "matrix products 36.0; casts 11.0"
        return "; ".join(f"{k} {_cell(x)}" for k, x in v.items())
    if isinstance(v, float):
        return "" if v != v else (f"{v:.2e}" if 0 < abs(v) < 0.01 else f"{v:.3f}")
    return v


def performance_figures(sections: list[dict[str, Any]]) -> list[str]:
    """Two plotly bar charts as raw HTML (plotly.js is served by the book): speed-ups and end-to-end time."""
    bars = [(sec["title"].split(" (")[0].split(":")[0], r["label"], r["speedup"]) for sec in sections for r in sec["rows"]
            if isinstance(r.get("speedup"), float) and r["speedup"] == r["speedup"]]
    html = []
    if bars:
        fig = go.Figure()
        for title in dict.fromkeys(b[0] for b in bars):
            sel = [b for b in bars if b[0] == title]
            fig.add_bar(name=title, y=[b[1][:70] for b in sel], x=[b[2] for b in sel], orientation="h")
        fig.add_vline(x=1, line_dash="dot")
        fig.update_layout(title="Speed-up against the baseline measured in the same run (×)", height=140 + 32 * len(bars),
                          margin={"l": 430}, yaxis={"autorange": "reversed"}, xaxis_title="speed-up (× baseline)",
                          yaxis_title="measurement (benchmark row)")
        html.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id="perf-speedups"))
    stages = [r for sec in sections if sec["id"] == "e2e" for r in sec["rows"] if not r.get("total")]
    if stages:
        fig = go.Figure(go.Bar(x=[_notebook_label(r["label"], short=True) for r in stages], y=[r["wall_s"] / 60 for r in stages]))
        fig.update_layout(title="End to end: minutes per stage", yaxis_title="wall time (min)", xaxis_title="stage (notebook or command)")
        html.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id="perf-e2e"))
    return [f"\n```{{raw}} html\n{h}\n```\n" for h in html]


def _notebook_label(label: Any, short: bool = False) -> Any:
    """A bench row's label, a notebook this book no longer has marked as such (bench files keep old names)."""
    name = str(label).split(" ")[0]
    if re.fullmatch(r"\d\d_[a-z0-9_]+", name) and name not in NOTEBOOKS:
        return f"{label} ({'since renamed' if short else 'a notebook of that commit, no longer in this book'})"
    return label


def section_table(sec: dict[str, Any]) -> pd.DataFrame:
    """A section's rows for display: label first, the baseline marked, row ids left out."""
    df = pd.DataFrame(sec["rows"]).drop(columns=["id", "total"], errors="ignore")
    df["label"] = df["label"].map(_notebook_label)
    if sec.get("baseline"):
        df["label"] = [f"{lab} (baseline)" if r["id"] == sec["baseline"] else lab for r, lab in zip(sec["rows"], df["label"])]
    return df[["label"] + [c for c in df if c != "label"]].apply(lambda c: c.map(_cell))


def run_section(manifest: dict[str, Any] | None) -> str:
    """The Performance appendix's first part: the run this book shows (its commit, machine, date and the compute
    time of each expensive step when it was computed), from its manifest; nothing from another run."""
    if not manifest:
        return "## The run this book shows\n\nThis book was built without a run manifest: no run timings to show.\n\n"
    git = manifest.get("git") or {}
    hw = manifest.get("hardware") or {}
    steps = pd.DataFrame(manifest.get("steps") or [])
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    commit = f"`{git['commit'][:7]}`{dirty}" if git.get("commit") else "an unknown commit"
    gpu = f", GPU {hw['cuda']}" if hw.get("cuda") else ", no GPU"
    out = (f"## The run this book shows\n\nProfile `{manifest.get('profile')}` ({manifest.get('model')}), code {commit}, "
           f"finished {str(manifest.get('finished', '?')).replace('T', ' ')} on {hw.get('cpu', '?')} "
           f"({hw.get('cpu_count', '?')} cores{gpu}). Executing its notebooks took {manifest.get('total_wall_s', 0):.0f} s, "
           "reusing the expensive steps below; each shows the compute time it took when it was computed.\n\n")
    if len(steps) and "wall_s" in steps:
        tab = pd.DataFrame({"step": steps.step, "notebook": steps.get("notebook", ""),
                            "compute time (min)": (steps.wall_s / 60).map(lambda v: f"{v:.1f}"),
                            "computed": steps.get("finished", pd.Series([""] * len(steps))).astype(str).str.replace("T", " "),
                            "reused in this run": steps.get("reused", pd.Series([None] * len(steps))).map(MET)})
        out += md_table(tab) + f"\n\nIn all: {steps.wall_s.sum() / 60:.1f} min of computation.\n\n"
    return out


def performance_page(manifest: dict[str, Any] | None = None) -> tuple[str, int]:
    """The Performance appendix: the run the book shows, then the newest results file (its commit against the
    book's), its sections as tables and bar charts with the goals it recorded; sections only older files measured
    follow, marked with their commit and date as older measurements. Returns the page and its figure count."""
    head = ("# Performance\n\n" + run_section(manifest) + "## Benchmarks\n\nMeasured by `cqa bench` (see `bench/README.md`), "
            "each on the commit and machine named with it, which need not be the run's above; figures are ratios against a "
            "baseline measured in the same benchmark. Each goal was judged by the bench when it measured the section, and "
            "is shown as the results file records it.\n\n")
    files, stale = results_files()
    note = (f"Not shown, in an older results format: {', '.join(f'`bench/results/{p.name}`' for p in stale)} "
            "(`python -m bench.migrate_results` converts them).\n\n" if stale else "")
    if not files:
        return head + note + "No benchmark results file yet: run `cqa bench` to produce `bench/results/<host>-<date>.json`.\n", 0
    res, path = files[-1]
    current = [sec for sec in res.get("sections", []) if sec.get("rows")]
    older = [f for f in newest_sections() if f[1] != path and f[0]["id"] not in {sec["id"] for sec in current}]
    goals = goal_table(current)
    out = [head, note, currency_note(res, path, current_commit())]
    if res.get("notes"):
        out.append(f"Notes recorded with it: {res['notes']}\n\n")
    out.append("## Goals (newest file)\n\n" + (md_table(goals) if len(goals) else "No goal is recorded in this file.") + "\n")
    figs = performance_figures(current)
    out += figs
    for sec in current:
        out.append(f"\n## {sec['title']}\n\n{md_table(section_table(sec))}\n")
    if older:
        out.append("\n## Older measurements (not current)\n\nSections the newest file did not measure, each from the newest "
                   "older file that did. They describe the code at their own commit, not this book's.\n")
        for sec, p, r in older:
            out.append(f"\n### {sec['title']} (commit `{short_commit(r)}`, {r.get('date', '')})\n\nFrom "
                       f"`bench/results/{p.name}`, on {machine_text(r)}.\n\n{md_table(section_table(sec))}\n")
    return "".join(out), len(figs)


def copy_plotly_js(root: Path) -> None:
    """Serve plotly.js from the book itself (offline): copy plotly's bundled copy into ``_static``."""
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    static = Path(root) / "_static"
    static.mkdir(exist_ok=True)
    if not (static / "plotly.min.js").exists() or (static / "plotly.min.js").stat().st_size != src.stat().st_size:
        shutil.copy2(src, static / "plotly.min.js")


def copy_sources(root: Path) -> None:
    """Copy the book's configuration and narrative chapters to another root (to build a book elsewhere)."""
    for rel in BOOK_SOURCES:
        (Path(root) / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, Path(root) / rel)


def build(strict: bool = True, log=print, root: Path = REPO_ROOT, reference: bool = False) -> Path:
    """Render the run pages and build the HTML book with Jupyter Book; returns the HTML folder.

    The book shows the last run published into ``book/run`` (``cqa run`` does that). Without one, or with
    ``reference``, it shows the reference run shipped in ``reference_run/cpu``, labelled as such on every page.
    """
    t0 = time.perf_counter()
    book_run = Path(root) / "book" / "run"
    missing = [n for n in NOTEBOOKS if not (book_run / f"{n}.ipynb").exists()]
    if reference or missing:
        if not (REFERENCE_DIR / "manifest.json").exists():
            raise FileNotFoundError(f"no executed notebooks for the book in {book_run} (missing {missing}) and no reference run "
                                    f"in {REFERENCE_DIR}: run `cqa run` first")
        log(f"building from the reference run shipped in {REFERENCE_DIR.relative_to(REPO_ROOT)} "
            + ("(asked for)" if reference else "(this checkout has no run of its own yet)"))
        publish(REFERENCE_DIR, root, reference=True)
    manifest = json.loads((book_run / "manifest.json").read_text())
    run_dir = Path((book_run / "RUN_DIR").read_text().strip())
    for n in NOTEBOOKS:  # an executed notebook with an error output must never be published
        nb = json.loads((book_run / f"{n}.ipynb").read_text())
        for cell in nb["cells"]:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    raise RuntimeError(f"{n}.ipynb holds an error output ({o.get('ename')}): fix and re-run before building")
    for n in NOTEBOOKS:
        remove_injected_parameters(book_run / f"{n}.ipynb")
    generated = render_pages(run_dir, manifest, book_run)
    copy_plotly_js(root)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output", str(root), "--keep-going"]
    if strict:
        cmd += ["-W", "-n"]
    log("building the book: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        log(proc.stdout[-4000:])
        log(proc.stderr[-4000:])
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode})")
    html = Path(root) / "_build" / "html"
    problems = check_html(html, generated)
    if problems:
        raise RuntimeError("built HTML is missing figures: " + "; ".join(problems))
    write_json(Path(root) / "_build" / "cqa_book_build.json",  # read by `cqa bench` (end-to-end section)
               {"wall_s": time.perf_counter() - t0, "run_dir": str(run_dir), "run_total_wall_s": manifest.get("total_wall_s")})
    log(f"book built: {html / 'index.html'}")
    return html


def remove_injected_parameters(path: Path) -> None:
    """Drop papermill's injected-parameters cell from the book's page (tag ``remove-cell``): it holds the run's own
    paths; the values a run was given are on the Reproducibility page, the defaults in the folded cell above."""
    nb = json.loads(path.read_text())
    changed = False
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        atomic_write(path, lambda p: p.write_text(json.dumps(nb, indent=1, ensure_ascii=False)))


def check_html(html: Path, generated: dict[str, int] | None = None) -> list[str]:
    """Static check: each figure page has its plotly figures and the page loads the local plotly.js.

    ``generated``: figure counts of the pages rendered at build time (the Performance appendix)."""
    problems = []
    for page, n in {**FIGURE_PAGES, **{k: v for k, v in (generated or {}).items() if v}}.items():
        f = html / "book" / "run" / f"{page}.html"
        if not f.exists():
            problems.append(f"{f.name} not built")
            continue
        text = f.read_text(errors="replace")
        got = len(re.findall(r"Plotly\.newPlot\(", text))
        if got < n:
            problems.append(f"{f.name}: {got} plotly figure(s), expected at least {n}")
        if "plotly.min.js" not in text:
            problems.append(f"{f.name}: does not load _static/plotly.min.js")
    return problems

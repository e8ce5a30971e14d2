"""Build the HTML book from the latest published run (no re-execution) and check its figures.

Pages that summarise a run (deviations, reproducibility, performance) and the claim criteria are
rendered as MyST pages from saved files; nothing about the run is recomputed at build time.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import atomic_write
from .claims import criteria_table
from .config import REPO_ROOT
from .run import NOTEBOOKS

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book/intro.md", "book/methods.md", "book/reliability.md")
FIGURE_PAGES = {"01_data": 2, "02_kl_prescreen": 2, "03_train": 1, "05_delta_delta_i": 1, "06_delta_logp": 1,
                "07_positive_control": 1, "08_decomposition": 2, "09_claims": 4}


def _md_table(df: pd.DataFrame) -> str:
    """A MyST (pipe) table; cells escaped."""
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    head = "| " + " | ".join(map(esc, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _fmt(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    return df.apply(lambda c: c.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else v))


def render_pages(run_dir: Path, manifest: dict[str, Any], book_run: Path) -> dict[str, int]:
    """Write the pages that summarise a run into ``book_run`` (``<root>/book/run``) from saved files only.

    Nothing is recomputed here: the deviations were computed by notebook 01 while the run ran, the
    manifest by ``cqa run``, the claim criteria are a data file of the repository. Returns
    {page: number of plotly figures} for the pages rendered here.
    """
    art = Path(run_dir) / "artifacts"
    crit = criteria_table()
    page = ("# Claim criteria, declared before the results\n\nEach claim of the paper that this replication tests, the test, "
            "the threshold and what counts as failure, fixed in `data/claims_criteria.csv` before any result was computed. "
            "The verdicts are in the last chapter of the pipeline (notebook 09).\n\n" + _md_table(crit) + "\n")
    atomic_write(book_run / "criteria.md", lambda p: p.write_text(page))
    dev = pd.read_csv(book_run / "deviations.csv") if (book_run / "deviations.csv").exists() else pd.read_csv(art / "01_data" / "deviations.csv")
    page = ("# Deviations from the paper\n\nEvery difference between this run and the paper's setup, and why, as computed "
            "by notebook 01 on the machine that ran it (`cqa_utils.deviations`); the paper's §3.4 hyperparameters are "
            "otherwise reproduced exactly (notebook 03 prints them side by side).\n\n" + _md_table(dev.fillna("")) + "\n")
    atomic_write(book_run / "deviations.md", lambda p: p.write_text(page))
    nb = pd.DataFrame(manifest["notebooks"])
    st = pd.DataFrame(manifest.get("steps", []))
    ver = pd.DataFrame(sorted(manifest["versions"].items()), columns=["package", "version"])
    hw = pd.DataFrame(sorted((k, str(v)) for k, v in manifest["hardware"].items()), columns=["", "value"])
    git = manifest["git"]
    page = (f"# Reproducibility\n\nFrom `manifest.json` of the run in `{manifest['run_dir']}` (finished {manifest['finished']}).\n\n"
            f"- profile: **{manifest['profile']}** ({manifest['model']}); seed {manifest['seed']}\n"
            f"- git commit: `{git.get('commit')}`{' (with uncommitted changes)' if git.get('dirty') else ''}\n"
            f"- data: {', '.join(f'`{v}`' for v in manifest['data'].values())}\n"
            f"- parameters: `{json.dumps(manifest['params'])}`\n- total wall time: {manifest['total_wall_s']:.0f} s\n\n"
            "To re-run exactly this: `cqa run --profile " + manifest["profile"] + "` then `cqa book`.\n\n"
            f"## Wall time per notebook\n\n{_md_table(_fmt(nb, 1))}\n\n"
            "## Expensive steps computed or reused\n\nEvery notebook is re-executed on each run; an expensive step (training, "
            "scoring, the prescreen) is reused when its key matches its last complete run. The key hashes the step's "
            "arguments (data by content, settings, model provenance) and the source of its module and of every package "
            "module that module imports.\n\n"
            f"{_md_table(_fmt(st, 1)) if len(st) else '(none)'}\n\n"
            f"## Package versions\n\n{_md_table(ver)}\n\n## Hardware\n\n{_md_table(hw)}\n")
    atomic_write(book_run / "reproducibility.md", lambda p: p.write_text(page))
    perf, n_figs = performance_page()
    atomic_write(book_run / "performance.md", lambda p: p.write_text(perf))
    return {"performance": n_figs}


def _sci(v: float) -> str:
    """1e-4 rather than 0.0001 or 1e-04."""
    m, e = f"{v:.0e}".split("e")
    return f"{m}e{int(e)}"


GOAL = {"scoring_speedup": 2.0, "agreement_nats": 1e-4, "training_speedup": 2.5, "loss_rel_diff": 0.01,
        "e2e_minutes": 30}
"""Issue 4's speed goals: the one table both the goals sentence and the goal judgement read."""
GOALS = (f"Goals (issue 4): scoring ≥ {GOAL['scoring_speedup']:g}× lm-evaluation-harness at ≤ {_sci(GOAL['agreement_nats'])} "
         f"nats; training ≥ {GOAL['training_speedup']:g}× trl's straightforward setup with per-epoch losses within "
         f"{100 * GOAL['loss_rel_diff']:g} %; `cqa run` + `cqa book` ≤ {GOAL['e2e_minutes']:g} min on 2 cores.")


def newest_sections() -> list[tuple[str, list[dict[str, Any]], Path, dict[str, Any]]]:
    """Each kind of section (scoring, sweep, training, end to end) from the newest ``bench/results/*.json``
    that measured it, ordered by the date recorded inside the files (file times change on checkout):
    (section name, rows, file, the file's results)."""
    files = sorted(((json.loads(p.read_text()), p) for p in (REPO_ROOT / "bench" / "results").glob("*.json")),
                   key=lambda f: (f[0].get("date", ""), f[1].name))
    kinds: dict[str, tuple[str, list[dict[str, Any]], Path, dict[str, Any]]] = {}
    for res, path in files:
        for name, rows in res.get("sections", {}).items():
            if rows:
                kinds[name.split()[0]] = (name, rows, path, res)
    order = ["Scoring", "Epoch", "Training", "End"]
    return sorted(kinds.values(), key=lambda k: order.index(k[0].split()[0]) if k[0].split()[0] in order else len(order))


def machine_text(res: dict[str, Any]) -> str:
    """The machine a results file came from, in words."""
    m = res.get("machine", {})
    bf16 = {True: ", native bf16", False: ", no native bf16"}.get(res.get("native_bf16"), "")
    gpu = f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU"
    code = f", code {res['commit']}" if res.get("commit") else ""
    return f"{m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores{bf16}{gpu}{code})"


def goal_table(res: dict[str, Any]) -> pd.DataFrame:
    """Each speed goal next to what the results file measured, and whether it is met."""
    rows = []
    for name, recs in res.get("sections", {}).items():
        try:
            rows += _goal_rows(name, recs)
        except (KeyError, TypeError):  # a results file from an older bench format
            continue
    return pd.DataFrame(rows)


def _goal_rows(name: str, recs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The goal row(s) of one results section."""
    rows = []
    if name.startswith("Scoring"):
        r = next((x for x in recs if "what the sweep runs" in x["scorer"]), None)
        if r and r.get("speedup_vs_lm_eval") is not None:
            agree = r["max_abs_diff_vs_fp64_ref_nats"]
            rows.append({"goal": f"scoring ≥ {GOAL['scoring_speedup']:g}× lm-eval, agreement ≤ {_sci(GOAL['agreement_nats'])} nats",
                         "measured": f"{r['speedup_vs_lm_eval']:.2f}×; {agree:.1e} nats vs the float64 reference, "
                                     f"{r['max_abs_diff_vs_lm_eval_nats']:.1e} vs lm-eval",
                         "met": _yes(r["speedup_vs_lm_eval"] >= GOAL["scoring_speedup"] and agree <= GOAL["agreement_nats"])})
    elif name.startswith("Epoch sweep"):
        r = next((x for x in recs if "as the sweep runs" in x["mode"]), None)
        if r:
            rows.append({"goal": "sweep on one loaded base, identical outputs", "measured":
                         f"{r['speedup']:.2f}× vs reloading; max |ΔI diff| {r['max_abs_diff_dI_nats']:.1e} nats",
                         "met": _yes(r["max_abs_diff_dI_nats"] == 0)})
    elif name.startswith("Training"):
        for r in [x for x in recs[1:] if "train_loss_max_rel_diff" in x]:  # ours vs the straightforward (first) row
            worst = max(r["train_loss_max_rel_diff"], r["eval_loss_max_rel_diff"])
            rows.append({"goal": f"training ≥ {GOAL['training_speedup']:g}× straightforward trl, losses within "
                                 f"{100 * GOAL['loss_rel_diff']:g} % per epoch: {r['setup'].split(' (')[0]}",
                         "measured": f"{r['speedup']:.2f}×; worst per-epoch loss difference {100 * worst:.2f} % "
                                     f"({r['epochs']} epochs, {r['rows']} rows)",
                         "met": _yes(r["speedup"] >= GOAL["training_speedup"] and worst <= GOAL["loss_rel_diff"])})
    elif name.startswith("End to end"):
        tot = next((x for x in recs if x["stage"] == "total (cqa run + cqa book)"), None)
        if tot:
            rows.append({"goal": f"cqa run + cqa book ≤ {GOAL['e2e_minutes']:g} min", "measured": f"{tot['wall_s'] / 60:.1f} min",
                         "met": _yes(tot["wall_s"] <= 60 * GOAL["e2e_minutes"])})
    return rows


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return " / ".join(_cell(x) for x in v)
    if isinstance(v, float):
        return "" if v != v else (f"{v:.2e}" if 0 < abs(v) < 0.01 else f"{v:.3f}")
    return v


def performance_figures(res: dict[str, Any]) -> list[str]:
    """Two plotly bar charts as raw HTML (plotly.js is served by the book): speed-ups and end-to-end time."""
    import plotly.graph_objects as go

    bars = []
    for name, recs in res.get("sections", {}).items():
        for r in recs:
            ratio = r.get("speedup", r.get("speedup_vs_lm_eval"))
            if isinstance(ratio, float) and ratio == ratio:
                bars.append((name.split(" (")[0].split(":")[0], r.get("scorer") or r.get("mode") or r.get("setup"), ratio))
    html = []
    if bars:
        fig = go.Figure()
        for sec in dict.fromkeys(b[0] for b in bars):
            sel = [b for b in bars if b[0] == sec]
            fig.add_bar(name=sec, y=[b[1][:70] for b in sel], x=[b[2] for b in sel], orientation="h")
        fig.add_vline(x=1, line_dash="dot")
        fig.update_layout(title="Speed-up against the baseline measured in the same run (×)", height=140 + 32 * len(bars),
                          margin={"l": 430}, yaxis={"autorange": "reversed"}, xaxis_title="× baseline")
        html.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id="perf-speedups"))
    e2e = [r for r in res.get("sections", {}).get("End to end (last cqa run)", []) if not r["stage"].startswith("total")]
    if e2e:
        fig = go.Figure(go.Bar(x=[r["stage"] for r in e2e], y=[r["wall_s"] / 60 for r in e2e]))
        fig.update_layout(title=f"End to end: minutes per stage (goal: {GOAL['e2e_minutes']:g} min in all)", yaxis_title="minutes")
        html.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id="perf-e2e"))
    return [f"\n```{{raw}} html\n{h}\n```\n" for h in html]


def performance_page() -> tuple[str, int]:
    """The Performance appendix (newest benchmark results as tables and bar charts, goals first); its figure count."""
    head = ("# Performance\n\nMeasured by `cqa bench` (see `bench/README.md`); figures are ratios against a baseline "
            f"measured in the same run. {GOALS}\n\n")
    found = newest_sections()
    if not found:
        return head + "No benchmark results file yet: run `cqa bench` to produce `bench/results/<host>-<date>.json`.\n", 0
    res = {"sections": {name: rows for name, rows, _, _ in found}}
    srcs = {path.name: r for _, _, path, r in found}
    out = [head, "Each section below comes from the newest results file that measured it: "
           + "; ".join(f"`bench/results/{n}` ({r.get('date', '')}, {machine_text(r)})" for n, r in srcs.items())
           + ".\n\n## Goals\n\n" + (_md_table(goals) if len(goals := goal_table(res)) else "No goal is measured in "
                                          "these files (they predate the goal columns): run `cqa bench`.") + "\n"]
    figs = performance_figures(res)
    out += figs
    lead = ("stage", "scorer", "mode", "setup")
    for section, rows, path, r in found:
        df = pd.DataFrame(rows)
        df = df[[c for c in lead if c in df] + [c for c in df if c not in lead]]
        out.append(f"\n## {section}\n\nFrom `bench/results/{path.name}`, measured {r.get('date', '')} on "
                   f"{machine_text(r)}.\n\n{_md_table(df.apply(lambda c: c.map(_cell)))}\n")
    return "".join(out), len(figs)


def copy_plotly_js(root: Path) -> None:
    """Serve plotly.js from the book itself (offline): copy plotly's bundled copy into ``_static``."""
    import plotly

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


def build(strict: bool = True, log=print, root: Path = REPO_ROOT) -> Path:
    """Render the run pages and build the HTML book with Jupyter Book; returns the HTML folder."""
    t0 = time.perf_counter()
    book_run = Path(root) / "book" / "run"
    missing = [n for n in NOTEBOOKS if not (book_run / f"{n}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"no executed notebooks for the book in {book_run} (missing {missing}): run `cqa run` first")
    manifest = json.loads((book_run / "manifest.json").read_text())
    run_dir = Path((book_run / "RUN_DIR").read_text().strip())
    for n in NOTEBOOKS:  # an executed notebook with an error output must never be published
        nb = json.loads((book_run / f"{n}.ipynb").read_text())
        for cell in nb["cells"]:
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    raise RuntimeError(f"{n}.ipynb holds an error output ({o.get('ename')}): fix and re-run before building")
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
    from .artifacts import write_json

    write_json(Path(root) / "_build" / "cqa_book_build.json",  # read by `cqa bench` (end-to-end section)
               {"wall_s": time.perf_counter() - t0, "run_dir": str(run_dir), "run_total_wall_s": manifest.get("total_wall_s")})
    log(f"book built: {html / 'index.html'}")
    return html


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

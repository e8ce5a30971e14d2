"""Convert bench results files of the first format (sections keyed by display title, rows named by their
label) to the current one (``bench.FORMAT``): every section and row gets its stable id, fields get
their current names, and each section's goals are judged by the bench's rules and written in.

Old labels are matched here, once, so that nothing else ever matches label text. Goals of a migrated file
are judged with today's thresholds (``bench.GOAL``); a goal the old file holds no number for is
recorded as not measured.

    .venv/bin/python bench/migrate_results.py                 # every old file in bench/results, in place
    .venv/bin/python bench/migrate_results.py FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.bench import FORMAT, RESULTS, section
from cqa_utils.pipeline.artifacts import write_json

SECTION_IDS = (("Scoring", "scoring"), ("Epoch sweep", "sweep"), ("Training", "training"), ("End to end", "e2e"))
ROW_IDS = {  # per section: (test on the old label, row id); the first test that matches wins
    "scoring": ((lambda s: s.startswith("plain loop"), "plain"), (lambda s: s.startswith("cqa score_encoded"), "unshared"),
                (lambda s: "what the sweep runs" in s, "ours"), (lambda s: "normalised as lm-eval" in s, "ours_log_softmax"),
                (lambda s: "bf16 autocast" in s, "ours_bf16"), (lambda s: "(batch 1)" in s, "lm_eval_bs1"),
                (lambda s: "(batch 8)" in s, "lm_eval_bs8"), (lambda s: s.startswith("ceiling"), "ceiling"),
                (lambda s: s.startswith("agreement"), "agreement")),
    "sweep": ((lambda s: s.startswith("reload"), "reload"), (lambda s: "unmerged" in s, "switch_unmerged"),
              (lambda s: s.startswith("one base"), "switch")),
    "training": ((lambda s: s.startswith("straightforward"), "trl"), (lambda s: s.startswith("ours, fp32"), "ours_fp32"),
                 (lambda s: s.startswith("ours, as run"), "ours_as_run"), (lambda s: s.startswith("ceiling"), "ceiling"),
                 (lambda s: s.startswith("floor"), "floor")),
    "e2e": ((lambda s: s == "total (cqa run)", "total_run"), (lambda s: s == "total (cqa run + cqa book)", "total"),
            (lambda s: s == "cqa book", "book")),
}
LABEL_KEYS = ("scorer", "mode", "setup", "stage")
RENAMED = {"speedup_vs_lm_eval": "speedup", "train_loss_rel_diff": "train_loss_max_rel_diff",
           "eval_loss_rel_diff": "eval_loss_max_rel_diff"}
BASELINES = {"sweep": "sweep.reload", "training": "training.trl"}


def row_id(section_id: str, label: str) -> str:
    """The stable id of an old row, from its label."""
    for test, rid in ROW_IDS.get(section_id, ()):
        if test(label):
            return f"{section_id}.{rid}"
    if section_id == "e2e":
        return f"e2e.{label}"  # a notebook's name
    raise ValueError(f"no row id for {label!r} in section {section_id!r}")


def migrate_row(section_id: str, old: dict[str, Any]) -> dict[str, Any]:
    """One old row with its id, its label under ``label`` and its fields under their current names."""
    label = next(old[k] for k in LABEL_KEYS if k in old)
    row = {"id": row_id(section_id, label), "label": label}
    row |= {RENAMED.get(k, k): v for k, v in old.items() if k not in LABEL_KEYS}
    if "train_loss_rel_diff" in old and "epochs" not in old:  # the first training bench ran one epoch
        row["epochs"] = 1
    if row["id"] in ("e2e.total_run", "e2e.total"):
        row["total"] = True
    return row


def migrate(res: dict[str, Any]) -> dict[str, Any]:
    """A results file of the first format in the current one (a current file is returned unchanged)."""
    if res.get("format") == FORMAT:
        return res
    sections = []
    for title, rows in res.get("sections", {}).items():
        sid = next(i for prefix, i in SECTION_IDS if title.startswith(prefix))
        new = [migrate_row(sid, r) for r in rows]
        base = BASELINES.get(sid) or next((r["id"] for r in new if r["id"].startswith("scoring.lm_eval")
                                           and r.get("speedup") == 1.0), None)
        sections.append(section(sid, title, new, base if any(r["id"] == base for r in new) else None))
    order = [i for _, i in SECTION_IDS]
    commit = res.get("commit") or ""
    out = {k: v for k, v in res.items() if k not in ("sections", "commit")}
    return out | {"format": FORMAT, "migrated_from_format": 1,
                  "git": {"commit": commit.split("+")[0] or None, "dirty": "+changes" in commit if commit else None},
                  "sections": sorted(sections, key=lambda s: order.index(s["id"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    files = ap.parse_args().files or sorted(RESULTS.glob("*.json"))
    for f in files:
        res = json.loads(f.read_text())
        if res.get("format") == FORMAT or "sections" not in res:
            print(f"{f}: left as it is")
            continue
        write_json(f, migrate(res))
        print(f"{f}: migrated to format {FORMAT}")


if __name__ == "__main__":
    main()

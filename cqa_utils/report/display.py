"""How the book prints values: paths relative to the repository, p-values, effect sizes, verdict words.

One place for the formatting every generated page shares, so that no page prints a machine path, a
Python repr or an unformatted float. The verdict vocabulary is mapped here too (old runs wrote
"reproduced"/"not reproduced"; newer ones write "consistent", "contradicted", "inconclusive").
"""

from __future__ import annotations

import math
import re
from typing import Any

from cqa_utils.method import claims as C
from cqa_utils.method.config import REPO_ROOT

#: Folders of this repository a path may pass through on another machine: the path is shown from there.
REPO_FOLDERS = ("data", "runs", "reference_run", "notebooks", "book", "bench", "cqa_utils", "tests")
_ABS = re.compile(r"(?<![\w.~-])/(?:[\w.+~-]+/)*[\w.+~-]+")

#: Verdict words of every claims.csv this book may meet -> the word shown. Old runs' "reproduced" is the
#: new "consistent"; their "not reproduced" lumped "contradicted" and "inconclusive" together, so it is
#: shown as "not consistent" rather than guessed into one of them.
VERDICT_LABEL = {"consistent": "consistent", "contradicted": "contradicted", "inconclusive": "inconclusive",
                 "cannot be tested here": "cannot be tested here",
                 "reproduced": "consistent", "not reproduced": "not consistent"}
#: What each shown word means, in one line each (the summary prints those that occur): the claims module's
#: definitions, plus the word only old runs have.
VERDICT_MEANING = {**C.MEANING,
                   "not consistent": "the declared criterion was not met (a run older than the contradicted/inconclusive split)"}
STATUS_MEANING = C.STATUS_MEANING


def verdict_label(word: Any) -> str:
    """The verdict word to show for a verdict as written in a claims table (unknown words pass through)."""
    w = str(word).strip()
    return VERDICT_LABEL.get(w, VERDICT_LABEL.get(w.split(":")[0].strip(), w))


def rel_path(path: Any) -> str:
    """A path as the book shows it: relative to this repository, also for a run made in another checkout.

    Inside this repository: relative to it. Passing through a folder the repository has (``data/``,
    ``runs/``, ...): from that folder on. Inside a Python environment: from ``site-packages/`` on.
    Anything else: the file name only.
    """
    s = str(path)
    if not s.startswith("/"):
        return s
    root = str(REPO_ROOT) + "/"
    if s.startswith(root):
        return s[len(root):]
    parts = s.split("/")
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages"):])
    for k, part in enumerate(parts):
        if part in REPO_FOLDERS and k + 1 < len(parts):
            return "/".join(parts[k:])
    return parts[-1]


def rel_text(text: Any) -> str:
    """``text`` with every absolute path in it shown by :func:`rel_path`."""
    return _ABS.sub(lambda m: rel_path(m.group(0)), str(text))


def fmt_p(p: Any) -> str:
    """A p-value to 2 significant figures ("—" when missing; never a NaN)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    p = float(p)
    return f"{p:.1e}" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def fmt_num(x: Any, digits: int = 2, sign: bool = False) -> str:
    """A number to ``digits`` decimals ("—" when missing); ``sign``: always show + or −."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    s = f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"
    return s.replace("-", "−")


def fmt_value(v: Any) -> str:
    """Any printed value in words: lists joined, dicts as "k: v" pairs, floats to 3 significant decimals."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v) or "none"
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "—"}[v]
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return rel_text(v)

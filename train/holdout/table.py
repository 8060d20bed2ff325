"""The hold-out results as text: one row per fold and per run's mean, with intervals; for
``holdout.md``, the console and the HTML page (:mod:`dfscan.train.holdout.report`).

The mean row's AUC, AP and TPR are means over folds; its FPR at the threshold pools the folds'
held-out reals (each real is held out in exactly one fold), with the pooled count's interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dfscan.scanner.formatting import num, pct

from ..fit.robustness import FPR_TARGET


def families_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({f for r in rows if r["fold"] != "mean" for f in r.get("families", {})})


def interval(ci: Sequence[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:  # (None, None): no interval
        return ""
    return f"[{ci[0]:.2f}–{ci[1]:.2f}]"


def pct_interval(ci: Sequence[float | None] | None) -> str:
    """A rate's interval in percent, e.g. ``[2.1–14.3 %]``."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{100 * ci[0]:.1f}–{100 * ci[1]:.1f} %]"


TABLE = (
    ("fold", "fold"),
    ("n", "real / fake"),
    ("auc", "AUC [95 % CI]"),
    ("ap", "AP"),
    ("tpr5", f"TPR @ {FPR_TARGET:.0%} FPR"),
    ("fpr_at_threshold", "FPR @ threshold [95 % CI]"),
    ("auc_jpeg75", "AUC JPEG-75"),
    ("auc_half", "AUC 0.5×"),
    ("status", "status"),
)


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["run", *(label for _, label in TABLE)]
    body = []
    for r in rows:
        cells = [r["run"]]
        for key, _ in TABLE:
            if key == "n":
                cells.append(f"{r['n_real']} / {r['n_fake']}" if "n_real" in r else "–")
            elif key in ("fold", "status"):
                cells.append(str(r.get(key, "")) if key != "status" else _status(r))
            elif key == "fpr_at_threshold":
                ci = pct_interval(r.get("fpr_at_threshold_ci"))
                cells.append(f"{pct(r.get(key))} {ci}".strip())
            elif key == "tpr5":
                cells.append(f"{pct(r.get(key))} {pct_interval(r.get('tpr5_ci'))}".strip())
            elif key == "auc":
                cells.append(f"{num(r.get(key))} {interval(r.get('auc_ci'))}".strip())
            else:
                cells.append(num(r.get(key)))
        body.append(cells)
    return header, body


def _status(row: dict[str, Any]) -> str:
    if row["status"] == "failed":
        return "failed: " + " ".join(str(row.get("error", "")).split())[:80]
    return row["status"]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    header, body = table_cells(rows)
    families = families_of(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    if families:
        lines += ["", "AUC of each held-out family against its fold's real images:", ""]
        lines += ["| run | fold | " + " | ".join(families) + " |"]
        lines += ["|" + "|".join("---" for _ in range(len(families) + 2)) + "|"]
        for r in rows:
            fams = r.get("families", {})
            if not fams:
                continue
            cells = [
                f"{num(fams[f]['auc'])} (n={fams[f]['n']})" if f in fams else "" for f in families
            ]
            lines.append(f"| {r['run']} | {r['fold']} | " + " | ".join(cells) + " |")
    held = [r for r in rows if r["fold"] != "mean" and r.get("real_sources")]
    if held:
        lines += ["", "Real sources held out in each fold (never seen in its training):", ""]
        lines += ["| run | fold | real sources |", "|---|---|---|"]
        lines += [f"| {r['run']} | {r['fold']} | {', '.join(r['real_sources'])} |" for r in held]
    return "\n".join(lines)

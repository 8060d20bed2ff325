"""``DIR/report.html`` of a hold-out study: the fold table, per-family AUC and a bar chart of
held-out AUC per fold (clean, JPEG-75, 0.5×), one self-contained page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..experiments.html_report import CSS, _fig_png, data_uri
from .table import markdown, table_cells


def _bars(rows: Sequence[dict[str, Any]]) -> bytes | None:
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "done" and r.get("auc") is not None]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(done)), 3.2))
    width = 0.27
    for k, (key, label) in enumerate(
        (("auc", "clean"), ("auc_jpeg75", "JPEG-75"), ("auc_half", "0.5×"))
    ):
        xs = [i + (k - 1) * width for i in range(len(done))]
        ax.bar(xs, [r.get(key) or 0 for r in done], width, label=label)
    ax.set_xticks(range(len(done)))
    ax.set_xticklabels([f"{r['run'][:18]}\n{r['fold']}" for r in done], fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out ROC-AUC")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    fig.tight_layout()
    png = _fig_png(fig)
    plt.close(fig)
    return png


def write_html(out: Path, rows: Sequence[dict[str, Any]], families: Sequence[str]) -> Path:
    header, body = table_cells(rows)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dfscan hold-out</title>",
        f"<style>{CSS}</style></head><body><h1>Held-out generators</h1>",
        "<p class='meta'>Each fold: trained on the other folds, scored on this one (families "
        "and, where sources are known, real-photo sources never seen in training). Intervals: "
        "95 % group bootstrap; FPR at the threshold: exact (Clopper–Pearson) over images, the "
        "mean row pooling every fold's held-out reals.</p>",
        "<div class='wide'><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>",
    ]
    for cells in body:
        parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table></div>")
    png = _bars(rows)
    if png:
        parts.append(f"<h2>AUC per fold</h2><img alt='AUC per fold' src='{data_uri(png)}'>")
    if families:
        parts.append(
            "<h2>Per family and real source</h2><pre>" + esc(markdown(rows).split("\n\n", 1)[-1])
        )
        parts.append("</pre>")
    parts.append("</body></html>")
    path = out / "report.html"
    tmp = path.with_name("report.html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path

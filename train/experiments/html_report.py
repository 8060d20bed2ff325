"""``DIR/report.html`` of ``dfscan experiments``: one self-contained page, viewable offline.

Every figure is embedded as a base64 ``data:`` URI (PNG; the Grad-CAM panels as JPEG, ~6×
smaller), so no file next to the page is needed and nothing is fetched; links to the run
folders are relative. Contents: the results table (best value of each metric in bold), a
heatmap of the test metrics per run, validation curves of all runs, then per run its loss
curves, its confusion matrices (all test images and each generator against the real ones) and
Grad-CAM panels of a few test images.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from dfscan.scanner import __version__
from dfscan.scanner.formatting import num
from dfscan.scanner.labels import REAL

from ..fit.plots import draw_confusion
from ..fit.run_settings import KEYS
from .grid import Grid, grid_toml
from .results_table import generators_of, is_text_column, table_cells

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1400px;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.5em 0 .3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdecea}tr.pending td{color:#888}
.meta{color:#555;font-size:.9em}.err{color:#b00020;white-space:pre-wrap;font-size:.85em}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.figs img{max-width:100%;border:1px solid #eee}.wide{overflow-x:auto}
code,pre{background:#f6f6f6;padding:.1em .3em}pre{padding:.6em;overflow-x:auto}
"""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _as_jpeg(png: bytes, quality: int = 85) -> bytes:
    """Photo-like figures (Grad-CAM overlays) are ~6× smaller as JPEG; the page stays light."""
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _fig_png(fig: Any, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes | None, alt: str, photo: bool = False) -> str:
    if not png:
        return ""
    src = data_uri(_as_jpeg(png), "image/jpeg") if photo else data_uri(png)
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _file_png(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


# --- figures ---------------------------------------------------------------------------------


def plot_confusion_strip(report: dict[str, Any], path: Path) -> None:
    """All test images, then each generator against the real images, in one row."""
    panels = [("all test images", report["confusion"])]
    panels += [
        (f"real vs {gen}", row["confusion_vs_real"])
        for gen, row in report["per_generator"].items()
        if "confusion_vs_real" in row
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels), 2.5), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels, strict=True):
        draw_confusion(ax, matrix, title, fontsize=10)
    fig.tight_layout()
    path.write_bytes(_fig_png(fig, dpi=80))


def metrics_heatmap(rows: Sequence[dict[str, Any]], generators: Sequence[str]) -> bytes | None:
    """Runs × (test AP, AUC, accuracy, real kept, detection per generator), values in cells."""
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        return None
    columns = ["AP", "AUC", "accuracy", "real kept (1−FPR)", *(f"det {g}" for g in generators)]

    def values(r: dict[str, Any]) -> list[float]:
        fpr = r.get("test_fpr_real")
        out = [r.get("test_ap"), r.get("test_auc"), r.get("test_accuracy")]
        out.append(None if fpr is None else 1.0 - fpr)
        out += [r.get("detection", {}).get(g) for g in generators]
        return [float("nan") if v is None else float(v) for v in out]

    matrix = [values(r) for r in done]
    fig, ax = plt.subplots(
        figsize=(1.0 * len(columns) + 3.5, 0.38 * len(done) + 1.4), layout="constrained"
    )
    ax.imshow(matrix, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v == v:  # not NaN
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(done)), [_label(r) for r in done], fontsize=8)
    ax.set_title("test split: higher is better", fontsize=9)
    return _fig_png(fig)


def loss_overview(rows: Sequence[dict[str, Any]]) -> bytes | None:
    """Validation loss and AUC per epoch, every finished run in one plot."""
    done = [r for r in rows if r["status"] == "done" and r.get("history")]
    if not done:
        return None
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    for r in done:
        epochs = [h["epoch"] for h in r["history"]]
        (line,) = ax_loss.plot(epochs, [h["val_loss"] for h in r["history"]], "-o", ms=3)
        aucs = [h.get("val_auc") for h in r["history"]]
        ax_auc.plot(epochs, [float("nan") if a is None else a for a in aucs], "-o", ms=3)
        line.set_label(_label(r))
    ax_loss.set(title="validation loss", xlabel="epoch", ylabel="cross-entropy")
    ax_auc.set(title="validation ROC-AUC", xlabel="epoch", ylim=(0.4, 1.01))
    for ax in (ax_loss, ax_auc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7)
    return _fig_png(fig)


def _label(r: dict[str, Any]) -> str:
    return f"#{r['index']} {r['run']}"


# --- page ------------------------------------------------------------------------------------


def _table(rows: Sequence[dict[str, Any]]) -> str:
    keys, header, body = table_cells(rows)
    best: dict[str, float] = {}
    for key in keys:
        if is_text_column(key) or key == "train_seconds":
            continue
        found = [_value(r, key) for r in rows if r["status"] == "done"]
        values = [v for v in found if v is not None]
        if len(values) > 1:
            best[key] = min(values) if key == "test_fpr_real" else max(values)
    out = ["<div class='wide'><table><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in header]
    out.append("</tr>")
    for r, cells in zip(rows, body, strict=True):
        out.append(f"<tr class='{r['status']}'>")
        for key, cell in zip(keys, cells, strict=True):
            text = html.escape(cell)
            if key == "#":
                text = f"<a href='#{r['folder']}'>{text}</a>"
            elif key in best and _value(r, key) == best[key] and r["status"] == "done":
                text = f"<b>{text}</b>"
            cls = "" if is_text_column(key) else " class='n'"
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</table></div>")
    return "".join(out)


def _value(r: dict[str, Any], key: str) -> float | None:
    if key.startswith("detection_"):
        return r.get("detection", {}).get(key.removeprefix("detection_"))
    return r.get(key)


def _split_counts(out: Path) -> str:
    from ..data.split import read_split

    path = out / "split.csv"
    if not path.is_file():
        return ""
    samples, assignment = read_split(path)
    counts: dict[str, dict[str, int]] = {}
    for s in samples:
        bucket = counts.setdefault(assignment[s.path], {})
        bucket[s.generator] = bucket.get(s.generator, 0) + 1
    gens = sorted({s.generator for s in samples}, key=lambda g: (g != REAL, g))
    head = "".join(f"<th>{html.escape(g)}</th>" for g in gens)
    body = "".join(
        f"<tr><td>{split}</td>"
        + "".join(f"<td class='n'>{counts.get(split, {}).get(g, 0)}</td>" for g in gens)
        + "</tr>"
        for split in ("train", "val", "test")
    )
    return f"<table><tr><th>split</th>{head}</tr>{body}</table>"


def _run_section(out: Path, r: dict[str, Any]) -> str:
    run_dir = out / "runs" / r["folder"]
    config = ", ".join(f"{k}={r[k]}" for k in KEYS)
    folder = html.escape(r["folder"])
    where = f"runs/{folder}"
    if run_dir.is_dir():  # links only to what exists
        where = f"<a href='runs/{folder}/'>{where}</a>"
    parts = [
        f"<h3 id='{folder}'>#{r['index']} {html.escape(r['run'])} "
        f"<span class='meta'>({where})</span></h3>",
        f"<p class='meta'><code>{html.escape(config)}</code></p>",
    ]
    if r["status"] == "failed":
        parts.append(f"<p class='err'>failed: {html.escape(r['error'])}</p>")
        return "".join(parts)
    if r["status"] == "pending":
        parts.append("<p class='meta'>not run yet (re-run the command to continue)</p>")
        return "".join(parts)
    parts.append(
        "<p class='meta'>"
        f"best epoch {r['best_epoch']}, threshold {r['threshold']:.3f} (EER on val); test: "
        f"accuracy {num(r['test_accuracy'])}, weighted F1 {num(r['test_f1_weighted'])}, "
        f"AP {num(r['test_ap'])}, AUC {num(r['test_auc'])}, "
        f"FPR on real {num(r['test_fpr_real'])}</p>"
    )
    figs = [
        _img(_file_png(run_dir / "loss.png"), f"{r['run']} loss curves"),
        _img(_file_png(run_dir / "confusion.png"), f"{r['run']} confusion matrices"),
        _img(_file_png(run_dir / "gradcam.png"), f"{r['run']} Grad-CAM", photo=True),
    ]
    parts.append("<div class='figs'>" + "".join(figs) + "</div>")
    return "".join(parts)


def write_report(out: Path, rows: Sequence[dict[str, Any]], grid: Grid) -> Path:
    gens = generators_of(rows)
    n_done = sum(r["status"] == "done" for r in rows)
    n_failed = sum(r["status"] == "failed" for r in rows)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>dfscan experiments</h1>",
        f"<p class='meta'>grid <b>{html.escape(grid.name)}</b> ({html.escape(grid.mode)}), "
        f"{len(rows)} run{'s' if len(rows) != 1 else ''}: {n_done} done, {n_failed} failed, "
        f"{len(rows) - n_done - n_failed} pending · dfscan {html.escape(__version__)} · "
        f"{stamp}. Every run trains on the same split; metrics are on its test images, at "
        "the threshold calibrated on the validation images (equal error rate). "
        "Detection rates are per generator; FPR is the share of real test images flagged.</p>",
        "<h2>Results</h2>",
        _table(rows),
    ]
    heat = metrics_heatmap(rows, gens)
    curves = loss_overview(rows)
    if heat or curves:
        body.append("<h2>Comparison</h2><div class='figs'>")
        body.append(_img(heat, "test metrics per run") + _img(curves, "validation curves"))
        body.append("</div>")
    body.append("<h2>Data split</h2>" + _split_counts(out))
    body.append("<h2>Runs</h2>")
    body += [_run_section(out, r) for r in rows]
    body.append(
        "<h2>Grid</h2><details><summary>TOML</summary>"
        f"<pre>{html.escape(grid_toml(grid))}</pre></details>"
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>dfscan experiments</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
    path = out / "report.html"
    tmp = path.with_name("report.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path

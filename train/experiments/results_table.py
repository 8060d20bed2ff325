"""The results of a grid as tables: one row per run from what its folder holds (done, failed
or pending), written as ``results.csv`` and ``results.md``; the HTML report shows the same
cells (:func:`table_cells`)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfscan.scanner.formatting import duration, num, pct, shorten

from ..fit.config import augment_name
from ..fit.run_settings import KEYS
from .grid import RunSpec
from .run_store import ERROR, RESULT, is_stale, read_json

METRIC_COLUMNS = (
    ("val_accuracy", "val acc"),
    ("test_accuracy", "test acc"),
    ("test_f1_weighted", "test F1 (w)"),
    ("test_ap", "test AP"),
    ("test_auc", "test AUC"),
    ("test_fpr_real", "FPR real"),
)


def collect_rows(out: Path, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """One row per run of the grid, from what is on disk: done, failed or pending."""
    rows = []
    split_file = out / "split.csv"
    for index, spec in enumerate(specs, 1):
        run_dir = out / "runs" / spec.folder
        row: dict[str, Any] = {
            "index": index,
            "run": spec.name,
            "folder": spec.folder,
            **spec.settings,
        }
        if split_file.is_file() and is_stale(run_dir, split_file):
            row |= {"status": "pending", "error": ""}  # trained on another split
        elif (run_dir / RESULT).is_file():
            row |= read_json(run_dir / RESULT) | {"status": "done", "error": ""}
        elif (run_dir / ERROR).is_file():
            err = read_json(run_dir / ERROR)
            hint = f" ({err['hint']})" if err.get("hint") else ""
            row |= {"status": "failed", "error": err["error"] + hint}
        else:
            row |= {"status": "pending", "error": ""}
        rows.append(row)
    return rows


def generators_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({g for r in rows for g in r.get("detection", {})})


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys that differ between runs (always the study keys that do)."""
    keys = [k for k in KEYS if len({json.dumps(r[k]) for r in rows}) > 1]
    return keys or ["arch", "input"]


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    gens = generators_of(rows)
    return [
        "run",
        "status",
        *KEYS,
        "best_epoch",
        "threshold",
        "val_accuracy",
        "val_f1_weighted",
        "val_ap",
        "val_auc",
        "test_n",
        "test_accuracy",
        "test_f1_weighted",
        "test_ap",
        "test_auc",
        "test_fpr_real",
        *(f"detection_{g}" for g in gens),
        "train_seconds",
        "step_seconds",
        "folder",
        "error",
    ]


def _csv_value(row: dict[str, Any], column: str) -> Any:
    if column.startswith("detection_"):
        value = row.get("detection", {}).get(column.removeprefix("detection_"))
    else:
        value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_tables(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``results.csv`` and ``results.md`` for the rows as they stand (each replaced whole)."""
    columns = csv_columns(rows)
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row, c) for c in columns])
    os.replace(tmp, out / "results.csv")
    (out / "results.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[list[str]]]:
    """The results table as text: (column keys, header, body); for results.md and the HTML."""
    config = varying_keys(rows)
    gens = generators_of(rows)
    keys = ["#", *config, *(k for k, _ in METRIC_COLUMNS)]
    keys += [f"detection_{g}" for g in gens] + ["train_seconds", "status"]
    header = ["#", *config, *(label for _, label in METRIC_COLUMNS)]
    header += [f"det {g}" for g in gens] + ["train time", "status"]
    body = []
    for r in rows:
        cells = [str(r["index"]), *(_config_cell(k, r[k]) for k in config)]
        for key, _ in METRIC_COLUMNS:
            value = r.get(key)
            cells.append(pct(value) if key == "test_fpr_real" else num(value))
        cells += [pct(r.get("detection", {}).get(g)) for g in gens]
        cells.append(duration(r.get("train_seconds")))
        status = r["status"]
        if status == "failed":
            status = f"failed: {shorten(r['error'])}"
        cells.append(status)
        body.append(cells)
    return keys, header, body


def is_text_column(key: str) -> bool:
    return key in ("#", "status", *KEYS)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    keys, header, body = table_cells(rows)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if is_text_column(k) else "--:" for k in keys]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *map(line, body)])


def _config_cell(key: str, value: Any) -> str:
    if key == "augment":
        return augment_name(value)
    if key == "synth":
        return ",".join(value) or "–"
    if key == "train_layers":
        return value.replace("layer", "l").replace(",", "+")
    if key == "max_steps" and not value:
        return "–"
    return str(value)

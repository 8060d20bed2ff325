"""``dfscan evaluate``: a checkpoint's metrics on a split (or a whole folder), as JSON and a table.

Per generator it reports the detection rate, the false-positive rate on ``real`` and AUC/AP of
each generator against the same real images, and marks generators the model never saw in
training: the honest number for a detector is how it does on those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dfscan.scanner.errors import DataError
from dfscan.scanner.formatting import num, pct
from dfscan.scanner.labels import REAL

from ..data.folder import Sample, scan_dataset
from ..data.loaders import ImageDataset
from ..data.split import SPLITS
from ..models.checkpoint import load_checkpoint
from .fitting import make_loader, split_metrics
from .loop import prepare_split, warn_unreadable
from .plots import plot_confusion
from .predict import predict, resolve_device


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    split_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` on one split of ``data`` (or ``all`` of it); write the metrics
    JSON and confusion-matrix PNGs, and return the report with where they went."""
    console = console or Console(stderr=True)
    checkpoint, data = Path(checkpoint), Path(data)
    split_file, out_dir, json_path = (
        None if p is None else Path(p) for p in (split_file, out_dir, json_path)
    )
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}; use one of {(*SPLITS, 'all')}")
    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, dev)
    trained = loaded.data.get("data", {})
    split_file = split_file or checkpoint.parent / "split.csv"
    samples = _samples_of(data, split, split_file, trained, console)
    if not samples:
        raise DataError(f"no images in the {split} split")
    dataset = ImageDataset(data, samples, loaded.config.preprocess, None)
    preds = predict(loaded.model, make_loader(dataset, batch_size, workers, False, 0), dev)
    metrics = split_metrics(preds, samples, loaded.threshold)
    seen = set(trained.get("generators", []))
    for gen, row in metrics["per_generator"].items():
        row["seen_in_training"] = gen == REAL or gen in seen
    report = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": split,
        "arch": loaded.config.arch,
        "input": loaded.config.input,
        "threshold": loaded.threshold,
        "unreadable": [samples[i].path for i in preds.skipped],
        **metrics,
    }
    out_dir = out_dir or checkpoint.parent / f"eval-{split}"
    _plot_confusions(metrics, split, out_dir)
    json_path = json_path or out_dir / "metrics.json"
    json_path.write_text(json.dumps(report, indent=2))
    report["json"] = str(json_path)
    report["figures"] = str(out_dir)
    return report


def _samples_of(
    data: Path, split: str, split_file: Path, trained: dict[str, Any], console: Console
) -> list[Sample]:
    """The images to score: every one in ``data`` for ``all``, else the split's, from the
    split file (with a warning when it is not the one the model was trained on)."""
    if split == "all":
        scan = scan_dataset(data)
        warn_unreadable(console, scan.unreadable)
        return scan.samples
    if not split_file.is_file():
        raise DataError(
            f"no split file at {split_file}",
            hint="pass --split-file FILE, or --split all to score every image in DATA",
        )
    prepared = prepare_split(data, split_file, seed=0)
    trained_hash = trained.get("split_hash")
    if trained_hash and prepared.hash != trained_hash:
        console.print(
            f"[yellow]warning:[/] {split_file} is not the split this model was trained on "
            f"(hash {prepared.hash} ≠ {trained_hash}); its '{split}' images may overlap "
            "the training images"
        )
    return prepared.subset(split)


def _plot_confusions(metrics: dict[str, Any], split: str, out_dir: Path) -> None:
    """confusion_all.png, and confusion_GEN.png of each generator against the real images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(metrics["confusion"], f"all images ({split})", out_dir / "confusion_all.png")
    for gen, row in metrics["per_generator"].items():
        if "confusion_vs_real" in row:
            plot_confusion(
                row["confusion_vs_real"], f"real vs {gen}", out_dir / f"confusion_{gen}.png"
            )


def render_report(report: dict[str, Any], console: Console) -> None:
    summary = Table(
        title=f"{report['arch']} {report['input']} on {report['split']}", show_header=False
    )
    for key, label in (
        ("n", "images"),
        ("accuracy", "accuracy"),
        ("precision_weighted", "precision (weighted)"),
        ("recall_weighted", "recall (weighted)"),
        ("f1_weighted", "F1 (weighted)"),
        ("ap", "average precision"),
        ("roc_auc", "ROC-AUC"),
        ("threshold", "threshold"),
    ):
        value = report[key]
        summary.add_row(label, str(value) if isinstance(value, int) else num(value))
    console.print(summary)
    table = Table(title="per generator")
    for col in ("generator", "images", "flagged fake", "mean p_fake", "AUC vs real", "AP vs real"):
        table.add_column(col, justify="left" if col == "generator" else "right")
    for gen, row in report["per_generator"].items():
        name = gen if row.get("seen_in_training", True) else f"{gen} (unseen)"
        flagged = pct(row["flagged_rate"]) + (" FPR" if gen == REAL else "")
        table.add_row(
            name,
            str(row["count"]),
            flagged,
            num(row["mean_p_fake"]),
            num(row.get("auc_vs_real")),
            num(row.get("ap_vs_real")),
        )
    console.print(table)
    if report["unreadable"]:
        console.print(f"[yellow]{len(report['unreadable'])} images could not be decoded[/]")
    console.print(f"metrics: {report['json']}  figures: {report['figures']}")

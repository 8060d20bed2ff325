"""``dfscan experiments``: the seed's ablation study as one resumable command.

A *grid* (:mod:`dfscan.train.experiments.grid`: a TOML or JSON file, or a built-in name) lists
training configurations; each run goes through the normal :func:`dfscan.train.fit.loop.train`
and :func:`dfscan.train.fit.evaluate.evaluate` on one split made up front (``DIR/split.csv``), so
every run sees the same train/val/test images. Results go to ``DIR/results.csv``,
``DIR/results.md`` (:mod:`dfscan.train.experiments.results_table`) and a self-contained
``DIR/report.html`` (:mod:`dfscan.train.experiments.html_report`), rewritten after every run.
What a run leaves in its folder, and so how re-running resumes, is
:mod:`dfscan.train.experiments.run_store`.

Imports point one way: this runner → report → tables → grid → run settings → TrainConfig.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from dfscan.scanner.errors import DfscanError
from dfscan.scanner.formatting import num
from dfscan.scanner.labels import REAL

from ..data.split import write_split
from ..fit.loop import prepare_split, warn_unreadable
from .grid import Grid, RunSpec, grid_toml
from .html_report import plot_confusion_strip, write_report
from .results_table import collect_rows, write_tables
from .run_store import (
    ERROR,
    RESULT,
    TIMING,
    add_time,
    is_stale,
    read_history,
    read_json,
    write_json,
)

__all__ = [
    "ExperimentsResult",
    "pick_cam_images",
    "run_experiments",
    "write_results",
]


@dataclass
class ExperimentsResult:
    out: Path
    rows: list[dict[str, Any]]
    csv: Path
    markdown: Path
    html: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def all_failed(self) -> bool:
        return bool(self.rows) and len(self.failed) == len(self.rows)


def run_experiments(
    data: str | Path,
    out: str | Path,
    grid: Grid,
    workers: int = 2,
    device: str = "auto",
    cam_images: int = 5,
    split_seed: int = 0,
    console: Console | None = None,
) -> ExperimentsResult:
    """Run (or resume) every run of ``grid`` on ``data``; write the tables and the report."""
    from ..fit.predict import resolve_device

    console = console or Console(stderr=True)
    resolve_device(device)  # --device cuda without CUDA: exit 5 now, not a failed row per run
    data, out = Path(data), Path(out)
    specs = grid.expand()
    out.mkdir(parents=True, exist_ok=True)
    split_file = _shared_split(data, out, split_seed, console)
    cam_sources = pick_cam_images(split_file, cam_images)
    write_json(
        out / "experiments.json",
        {
            "data": str(data),
            "grid": grid.name,
            "grid_mode": grid.mode,
            "grid_toml": grid_toml(grid),
            "runs": [s.folder for s in specs],
        },
    )
    rows = write_results(out, specs, grid)
    try:
        for i, spec in enumerate(specs, 1):
            run_dir = out / "runs" / spec.folder
            if is_stale(run_dir, split_file):
                console.print(f"{spec.folder} was made on another split: training it again")
                for name in (RESULT, ERROR, TIMING, "metrics.json", "last.ckpt"):
                    (run_dir / name).unlink(missing_ok=True)
            if (run_dir / RESULT).is_file():
                console.print(f"[dim][{i}/{len(specs)}] {spec.folder}: done, skipped[/]")
                continue
            console.rule(f"[{i}/{len(specs)}] {spec.folder}")
            _run_one(spec, data, run_dir, split_file, workers, device, cam_sources, console)
            rows = write_results(out, specs, grid)
    except BaseException:  # Ctrl-C too: the tables show what is done
        write_results(out, specs, grid)
        raise
    return ExperimentsResult(
        out, rows, out / "results.csv", out / "results.md", out / "report.html"
    )


def _shared_split(data: Path, out: Path, seed: int, console: Console) -> Path:
    """``DIR/split.csv``: made once from DATA, then reused by every run (and every re-run)."""
    split_file = out / "split.csv"
    if split_file.is_file():
        prepare_split(data, split_file, seed)  # the files must still be there
        return split_file
    prepared = prepare_split(data, None, seed)
    warn_unreadable(console, prepared.unreadable)
    tmp = split_file.with_name("split.csv.tmp")
    write_split(tmp, prepared.samples, prepared.assignment)
    os.replace(tmp, split_file)
    return split_file


def pick_cam_images(split_file: Path, limit: int) -> list[tuple[str, str]]:
    """(generator, path) of test images for the Grad-CAM panels: one real, then one per
    generator, round-robin, up to ``limit``; the same images for every run."""
    from ..data.split import read_split

    samples, assignment = read_split(split_file)
    by_gen: dict[str, list[str]] = {}
    for s in sorted(samples, key=lambda s: s.path):
        if assignment[s.path] == "test":
            by_gen.setdefault(s.generator, []).append(s.path)
    order = sorted(by_gen, key=lambda g: (g != REAL, g))
    picked: list[tuple[str, str]] = []
    for depth in range(max((len(v) for v in by_gen.values()), default=0)):
        for gen in order:
            if len(picked) < limit and depth < len(by_gen[gen]):
                picked.append((gen, by_gen[gen][depth]))
    return picked


def _run_one(
    spec: RunSpec,
    data: Path,
    run_dir: Path,
    split_file: Path,
    workers: int,
    device: str,
    cam_sources: Sequence[tuple[str, str]],
    console: Console,
) -> None:
    from ..fit.evaluate import evaluate
    from ..fit.loop import train

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", spec.settings)
    try:
        if not (run_dir / "metrics.json").is_file():
            resume = (run_dir / "last.ckpt").is_file()
            cfg = spec.train_config(data, run_dir, split_file, workers, device, resume)
            started = time.perf_counter()
            try:
                train(cfg, console)
            finally:
                add_time(run_dir, time.perf_counter() - started)
        trained = read_json(run_dir / "metrics.json")
        report = evaluate(
            run_dir / "model.ckpt",
            data,
            split="test",
            split_file=split_file,
            out_dir=run_dir / "eval-test",
            workers=workers,
            device=device,
            console=console,
        )
        _run_figures(run_dir, data, report, cam_sources, device, console)
        result = _result(spec, trained, report, run_dir)
        write_json(run_dir / RESULT, result)
        (run_dir / ERROR).unlink(missing_ok=True)
        (run_dir / "last.ckpt").unlink(missing_ok=True)  # only for resuming; model.ckpt stays
        console.print(
            f"[green]done[/] {spec.folder}: test acc {num(result['test_accuracy'])}, "
            f"AP {num(result['test_ap'])}, AUC {num(result['test_auc'])}"
        )
    except Exception as exc:  # recorded, not fatal: the next run starts
        message = exc.message if isinstance(exc, DfscanError) else str(exc)
        error = f"{type(exc).__name__}: {message}".strip()
        hint = exc.hint if isinstance(exc, DfscanError) else None
        write_json(
            run_dir / ERROR,
            {"error": error, "hint": hint, "traceback": traceback.format_exc()},
        )
        console.print(f"[red]failed[/] {spec.folder}: {error}", highlight=False, markup=False)


def _run_figures(
    run_dir: Path,
    data: Path,
    report: dict[str, Any],
    cam_sources: Sequence[tuple[str, str]],
    device: str,
    console: Console,
) -> None:
    """Confusion matrices and Grad-CAM panels; a figure that fails is a warning, not a failed
    run (the metrics are what the run is for)."""
    from rich.markup import escape

    from ..fit.predict import resolve_device
    from ..models.checkpoint import load_checkpoint
    from .explain import explain_files, plot_explanation_grid

    plot_confusion_strip(report, run_dir / "confusion.png")
    if not cam_sources:
        return
    try:
        dev = resolve_device(device)
        loaded = load_checkpoint(run_dir / "model.ckpt", dev)
        paths = [data / rel for _, rel in cam_sources]
        items = explain_files(loaded, paths, None, dev)
        labels = [gen for gen, _ in cam_sources]
        title = f"Grad-CAM of 'fake': {loaded.config.arch} {loaded.config.input}"
        plot_explanation_grid(items, labels, loaded.config.input, run_dir / "gradcam.png", title)
    except DfscanError as exc:
        console.print(f"[yellow]warning:[/] no Grad-CAM panel: {escape(str(exc))}")


def _result(
    spec: RunSpec, trained: dict[str, Any], report: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    val = trained["val"]
    history = read_history(run_dir / "history.csv")
    steps = [h["step_seconds"] for h in history if h.get("step_seconds") is not None]
    timing = read_json(run_dir / TIMING) if (run_dir / TIMING).is_file() else {}
    per_gen = report["per_generator"]
    return {
        **spec.settings,
        "best_epoch": trained["best_epoch"],
        "threshold": trained["threshold"],
        "val_accuracy": val["accuracy"],
        "val_f1_weighted": val["f1_weighted"],
        "val_ap": val["ap"],
        "val_auc": val["roc_auc"],
        "test_n": report["n"],
        "test_accuracy": report["accuracy"],
        "test_f1_weighted": report["f1_weighted"],
        "test_ap": report["ap"],
        "test_auc": report["roc_auc"],
        "test_fpr_real": per_gen.get(REAL, {}).get("false_positive_rate"),
        "detection": {g: r["detection_rate"] for g, r in per_gen.items() if g != REAL},
        "train_seconds": timing.get("seconds"),
        "step_seconds": sum(steps) / len(steps) if steps else None,
        "history": history,
        "confusion": {"all": report["confusion"]}
        | {g: r["confusion_vs_real"] for g, r in per_gen.items() if "confusion_vs_real" in r},
    }


def write_results(out: Path, specs: Sequence[RunSpec], grid: Grid) -> list[dict[str, Any]]:
    """``results.csv``, ``results.md`` and ``report.html`` for the grid's runs as they stand."""
    rows = collect_rows(out, specs)
    write_tables(out, rows)
    write_report(out, rows, grid)
    return rows

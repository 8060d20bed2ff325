"""``dfscan demo``: the whole pipeline — data, training, export, scan — in minutes on a CPU.

Runs on the simulated demo dataset (``dfscan.train.data.demo``), so its numbers prove that the
plumbing works end to end; they say nothing about real generators.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from dfscan.scanner.errors import DataError

if TYPE_CHECKING:
    from dfscan.train.fit.config import TrainConfig


@dataclass
class DemoConfig:
    """The ``robust`` recipe (offline weights), with the crop fitted to the demo images."""

    out: Path
    recipe: str = "robust"
    input: str | None = None  # None: the recipe's
    size: int = 96
    epochs: int | None = None
    n_real: int = 240
    data_size: int = 128  # side of the demo images
    max_steps: int | None = None  # cap on steps per epoch (tests)
    seed: int = 0
    workers: int = 2

    def __post_init__(self) -> None:
        self.out = Path(self.out)  # may be given as str


@dataclass
class DemoResult:
    data: Path
    checkpoint: Path
    onnx: Path
    test_folder: Path
    csv: Path
    seconds: dict[str, float]


def copy_test_split(data: Path, split_csv: Path, dest: Path) -> int:
    """The test split as a folder the scanner can read (generator = first-level subfolder)."""
    if dest.exists():
        shutil.rmtree(dest)
    from dfscan.train.data.split import read_split

    samples, assignment = read_split(split_csv)
    test = [s.path for s in samples if assignment[s.path] == "test"]
    for rel in test:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / rel, target)
    if not test:
        raise DataError(f"{split_csv} has no test images")
    return len(test)


def prepare_out(out: Path) -> None:
    """Use an empty/new folder, or redo a previous demo in place; never touch anything else."""
    from dfscan.train.data.demo import MANIFEST

    if out.exists() and not out.is_dir():
        raise DataError(f"--out is a file: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "data" / MANIFEST).is_file():
            raise DataError(
                f"{out} is not empty and holds no previous demo",
                hint="pass --out with a new folder",
            )
        shutil.rmtree(out / "run", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


class _Steps:
    """The demo's numbered steps: a rule in the log before each, and the seconds it took."""

    def __init__(self, log: Console) -> None:
        self.log = log
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        self.log.rule(f"[bold]{title}")
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started


def run_demo(cfg: DemoConfig, console: Console, log: Console) -> DemoResult:
    """Data, training, export with the parity check, and a scan of the held-out test images;
    the steps go to ``log``, the scan's summary and where things are to ``console``."""
    from dfscan.scanner.cli.scan import print_summary
    from dfscan.scanner.scan.options import ScanOptions
    from dfscan.scanner.scan.run import run_scan
    from dfscan.train.data.demo import build_demo_dataset
    from dfscan.train.fit.loop import train

    out = cfg.out
    data, run, onnx_path = out / "data", out / "run", out / "model.onnx"
    test, report = out / "test", out / "scan.csv"
    prepare_out(out)
    steps = _Steps(log)

    with steps.step("data", "1/4 demo dataset (simulated generators, offline)"):
        summary = build_demo_dataset(data, seed=cfg.seed, n_real=cfg.n_real, size=cfg.data_size)
        log.print(f"{summary.root}: " + ", ".join(f"{k} {v}" for k, v in summary.counts.items()))

    train_cfg = _train_config(cfg, data, run)
    title = (
        f"2/4 training: recipe {cfg.recipe}, {train_cfg.arch} ({train_cfg.input}, "
        f"{train_cfg.size}², {train_cfg.epochs} epochs)"
    )
    with steps.step("train", title):
        train(train_cfg, log)

    with steps.step("export", "3/4 export to ONNX with the parity check"):
        n_test = copy_test_split(data, run / "split.csv", test)
        _export_checked(run / "model.ckpt", onnx_path, test, log)

    with steps.step("scan", f"4/4 scanning the {n_test} held-out test images"):
        result = run_scan(
            ScanOptions(folders=[test], model=onnx_path, csv=report, existing="overwrite"),
            notify=lambda message: log.print(f"[yellow]warning:[/] {message}", highlight=False),
        )
    print_summary(result)
    total = sum(steps.seconds.values())
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in steps.seconds.items())
    console.print(f"report: {report}   model: {onnx_path}   ({timings}; total {total:.0f} s)")
    console.print(
        f"next: dfscan {test} --model {onnx_path} --csv my.csv   "
        "(this is simulated data: the numbers test the pipeline, not real generators)"
    )
    return DemoResult(data, run / "model.ckpt", onnx_path, test, report, steps.seconds)


def _train_config(cfg: DemoConfig, data: Path, run: Path) -> TrainConfig:
    """The recipe's training config, with the demo's overrides where they are set."""
    from dfscan.train.fit.config import config_from_settings

    overrides = {"size": cfg.size, "input": cfg.input, "epochs": cfg.epochs}
    return config_from_settings(
        cfg.recipe,
        {k: v for k, v in overrides.items() if v is not None},
        data=data,
        out=run,
        seed=cfg.seed,
        workers=cfg.workers,
        max_steps=cfg.max_steps,
    )


def _export_checked(checkpoint: Path, onnx_path: Path, test: Path, log: Console) -> None:
    """Export to ONNX, checked against the eager model on the test images (fails on a
    parity failure)."""
    from .exporter import export_checkpoint, file_size

    exported = export_checkpoint(
        checkpoint, onnx_path, check=True, check_images=test, check_limit=64
    )
    if exported.parity is not None:
        log.print(exported.parity.table())
    exported.raise_for_parity()
    log.print(f"{onnx_path} ({file_size(exported.onnx_bytes)})")

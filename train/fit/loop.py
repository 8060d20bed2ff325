"""``dfscan train``: fine-tune a detector, keep the best by validation loss, calibrate it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from dfscan.scanner.errors import DataError, ModelError
from dfscan.scanner.formatting import NA, num
from dfscan.scanner.labels import FAKE_LABEL, REAL_LABEL
from dfscan.scanner.model.preprocess import PreprocessConfig

from ..data.folder import Sample, scan_dataset
from ..data.loaders import ImageDataset
from ..data.split import (
    SPLITS,
    check_split,
    describe_split,
    make_split,
    read_split,
    split_hash,
    write_split,
)
from ..models.checkpoint import (
    ModelConfig,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    write_atomic,
)
from ..models.registry import create_model
from .config import TrainConfig
from .fitting import (
    FitJob,
    FitProgress,
    fit_lbfgs,
    fit_sgd,
    make_loader,
    progress_bar,
    split_metrics,
)
from .metrics import threshold_rule
from .predict import predict, resolve_device


@dataclass
class SplitData:
    root: Path
    samples: list[Sample]
    assignment: dict[str, str]
    unreadable: list[tuple[str, str]]
    hash: str
    # (relative path, the path kept) of files reached twice; empty when read from a split file
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def subset(self, split: str) -> list[Sample]:
        return [s for s in self.samples if self.assignment[s.path] == split]

    def summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
        for s in self.samples:
            bucket = counts[self.assignment[s.path]]
            bucket[s.generator] = bucket.get(s.generator, 0) + 1
        return {
            "root": str(self.root),
            "split_hash": self.hash,
            "generators": sorted({s.generator for s in self.samples if s.label == FAKE_LABEL}),
            "counts": counts,
            "balance": describe_split(self.samples, self.assignment),
            "unreadable": len(self.unreadable),
        }


def prepare_split(root: Path, split_file: Path | None, seed: int) -> SplitData:
    """Scan the dataset and split it, or reuse a split file (paths relative to ``root``)."""
    if split_file is not None:
        if not root.is_dir():
            raise DataError(f"dataset folder not found: {root}")
        samples, assignment = read_split(split_file)
        missing = [s.path for s in samples if not (root / s.path).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} files of {split_file} are missing under {root} "
                f"(first: {missing[0]})",
                hint="pass the DATA folder the split was made for",
            )
        return SplitData(root, samples, assignment, [], split_hash(assignment))
    scan = scan_dataset(root)
    assignment = make_split(scan.samples, seed)
    check_split(scan.samples, assignment)
    return SplitData(
        root, scan.samples, assignment, scan.unreadable, split_hash(assignment), scan.duplicates
    )


def warn_unreadable(console: Console, unreadable: list[tuple[str, str]], limit: int = 10) -> None:
    if not unreadable:
        return
    console.print(f"[yellow]warning:[/] skipped {len(unreadable)} unreadable images:")
    for path, reason in unreadable[:limit]:
        console.print(f"  {path}: {reason}", markup=False, highlight=False)
    if len(unreadable) > limit:
        console.print(f"  … and {len(unreadable) - limit} more")


def warn_duplicates(console: Console, duplicates: list[tuple[str, str]]) -> None:
    """One line: files reached twice (a symbolic or hard link) are one sample each, so the
    dataset is smaller than its listing; the example says which path was kept."""
    if not duplicates:
        return
    path, kept = duplicates[0]
    files = f"{len(duplicates)} duplicate file" + ("s" if len(duplicates) != 1 else "")
    console.print(
        f"[yellow]warning:[/] skipped {files}, the same file under another path (a link): "
        f"e.g. {escape(path)} is {escape(kept)}",
        highlight=False,
    )


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    threshold: float
    val: dict[str, Any]
    test: dict[str, Any]
    history: list[dict[str, Any]]


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Fine-tune on ``cfg.data``; each epoch goes to last.ckpt (to resume), the best by
    validation loss (or the last, ``keep``) to model.ckpt, which is then scored on test."""
    console = console or Console(stderr=True)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)  # before anything is written
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and cfg.head_fit == "lbfgs":
        raise DataError("head_fit lbfgs fits the head in one step: there is nothing to resume")
    resume_state = _resume_state(cfg) if cfg.resume else None
    data = _split_for_run(cfg, resumed=resume_state is not None, console=console)

    # preprocess and input are str settings (options, grids) where these take Literals; each
    # checks the value against its Literal's tuple (MODES, INPUTS) with a one-line error
    preprocess = PreprocessConfig(size=cfg.size, mode=cfg.preprocess)  # type: ignore[arg-type]
    model = create_model(cfg.arch, cfg.input, cfg.weights, cfg.train_layers, cfg.size)  # type: ignore[arg-type]
    model_config = ModelConfig.for_model(cfg.arch, cfg.input, preprocess, model)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(params, cfg)
    train_samples = data.subset("train") + _synthetic_fakes(cfg, data, console)
    train_set = ImageDataset(cfg.data, train_samples, preprocess, cfg.augment, cfg.seed)
    val_set = ImageDataset(cfg.data, data.subset("val"), preprocess, None, cfg.seed)
    progress = FitProgress()
    if resume_state is not None:
        progress = _restore(resume_state, model, optimizer)
        console.print(f"resuming after epoch {progress.start} of {cfg.epochs}")
    n_params = sum(p.numel() for p in params)
    console.print(
        f"[bold]{cfg.arch}[/] {cfg.input} {preprocess.mode} {cfg.size}² on {device}: "
        f"{len(train_set)} train / {len(val_set)} val images, "
        f"trainable {'+'.join(model.trainable)} ({n_params / 1e6:.1f} M params)"
    )
    console.print(describe_split(data.samples, data.assignment), markup=False, highlight=False)
    save = partial(
        save_checkpoint,
        config=model_config,
        threshold_rule=threshold_rule(cfg.target_fpr),
        data=data.summary(),
        train_config=cfg.to_dict(),
    )
    job = FitJob(cfg, model, train_set, val_set, device, progress, save, console)
    if cfg.head_fit == "lbfgs":
        fit_lbfgs(job)
    else:
        fit_sgd(job, optimizer)
    return _finish(
        cfg, cfg.out, data, preprocess, device, progress.history, progress.best_epoch, console
    )


def _split_for_run(cfg: TrainConfig, resumed: bool, console: Console) -> SplitData:
    """The run's split: its own split.csv when resuming, else ``cfg.split`` or a new one,
    written to split.csv (unless it is that file already)."""
    own = cfg.out / "split.csv"
    split_file = own if resumed else cfg.split
    data = prepare_split(cfg.data, split_file, cfg.seed)
    warn_unreadable(console, data.unreadable)
    warn_duplicates(console, data.duplicates)
    if split_file is None or split_file.resolve() != own.resolve():
        write_split(own, data.samples, data.assignment)
    return data


def _optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW when there is weight decay, else plain Adam."""
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr)


def _restore(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> FitProgress:
    """Load last.ckpt's weights and optimizer state; where the run stood."""
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    return FitProgress(
        history=list(state["history"]),
        best_loss=state["best_val_loss"],
        best_epoch=state["best_epoch"],
        start=int(state["epoch"]),
    )


def _synthetic_fakes(cfg: TrainConfig, data: SplitData, console: Console) -> list[Sample]:
    """Content-matched fakes of the training reals (:mod:`dfscan.train.data.synth`), if asked
    for."""
    if not cfg.synth:
        return []
    from ..data.synth import make_fakes

    reals = [s for s in data.subset("train") if s.label == REAL_LABEL]
    started = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task("synthetic fakes", total=len(reals), loss=0.0)
        fakes = make_fakes(
            cfg.data,
            reals,
            cfg.synth,
            cfg.size,
            cfg.seed,
            lambda done, _: progress.update(task, completed=done),
        )
    console.print(
        f"{len(fakes)} synthetic fakes ({', '.join(cfg.synth)}) of {len(reals)} training reals "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return fakes


def _resume_state(cfg: TrainConfig) -> dict[str, Any]:
    last = cfg.out / "last.ckpt"
    if not last.is_file():
        raise ModelError(f"nothing to resume: {last} not found")
    state = read_checkpoint(last)
    saved = ModelConfig.from_dict(state["config"], str(last))
    mine = {"arch": cfg.arch, "input": cfg.input, "size": cfg.size, "mode": cfg.preprocess}
    theirs = {
        "arch": saved.arch,
        "input": saved.input,
        "size": saved.preprocess.size,
        "mode": saved.preprocess.mode,
    }
    if mine != theirs:
        raise ModelError(f"cannot resume: {last} was trained with {theirs}, not {mine}")
    return state


def _finish(cfg, out, data, preprocess, device, history, best_epoch, console) -> TrainResult:
    """Reload the best model, score the test split, store both in model.ckpt and metrics.json.

    A split without test images (a final model trained on everything, e.g. the built-in
    detector) records no test metrics instead of failing on an empty set."""
    loaded = load_checkpoint(out / "model.ckpt", device)
    model, best = loaded.model, loaded.data
    test_samples = data.subset("test")
    threshold = loaded.threshold
    test_metrics: dict[str, Any] = {}
    if test_samples:
        test_set = ImageDataset(cfg.data, test_samples, preprocess, None, cfg.seed)
        test = predict(
            model, make_loader(test_set, cfg.batch_size, cfg.workers, False, cfg.seed), device
        )
        test_metrics = split_metrics(test, test_samples, threshold)
        best["metrics"]["test"] = test_metrics
        write_atomic(best, out / "model.ckpt")
    report = {
        "best_epoch": best_epoch,
        "threshold": threshold,
        "threshold_rule": loaded.threshold_rule,
        "val": best["metrics"]["val"],
        "test": test_metrics,
        "data": data.summary(),
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    tested = (
        f"test accuracy {test_metrics['accuracy']:.3f}, AUC {num(test_metrics['roc_auc'], NA)}, "
        f"AP {num(test_metrics['ap'], NA)}"
        if test_metrics
        else "no test split"
    )
    console.print(
        f"best epoch {best_epoch}: threshold {threshold:.3f} ({loaded.threshold_rule}); "
        f"{tested} → {out / 'model.ckpt'}"
    )
    return TrainResult(out, best_epoch, threshold, best["metrics"]["val"], test_metrics, history)

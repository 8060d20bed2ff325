"""Fitting a detector on its training split: SGD epochs, or one exact head fit.

Both end the same way: a history row per epoch in history.csv (and loss.png), the validation
threshold, model.ckpt for the kept epoch and last.ckpt to resume from.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from dfscan.scanner.formatting import NA, num
from dfscan.scanner.labels import REAL_LABEL

from ..data.folder import Sample
from ..data.loaders import ImageDataset, collate
from ..models.detector import Detector
from .config import TrainConfig
from .metrics import (
    binary_metrics,
    calibrated_threshold,
    per_generator,
    threshold_rule,
)
from .plots import plot_history
from .predict import Predictions, predict

HISTORY_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_auc",
    "lr",
    "seconds",
    "step_seconds",
    "data_wait_seconds",
    "skipped",
)


def split_metrics(preds: Predictions, samples: list[Sample], threshold: float) -> dict[str, Any]:
    gens = [samples[i].generator for i in preds.indices]
    metrics = binary_metrics(preds.labels, preds.p_fake, threshold)
    metrics["loss"] = preds.loss
    metrics["per_generator"] = per_generator(preds.labels, preds.p_fake, gens, threshold)
    return metrics


def make_loader(
    ds: ImageDataset, batch_size: int, workers: int, shuffle: bool, seed: int
) -> DataLoader:
    per_batch = max(1, batch_size // ds.views_per_item)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=per_batch,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        drop_last=False,
    )


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def calibrate(
    preds: Predictions,
    samples: list[Sample],
    target_fpr: float = 0.0,
    also: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, dict[str, Any]]:
    """The threshold on the validation predictions (see ``calibrated_threshold``), pooled with
    ``also`` (more held-out (p_fake, labels)) when given, and the validation metrics at it."""
    labels, scores = preds.labels, preds.p_fake
    if also is not None:
        scores, labels = np.concatenate([scores, also[0]]), np.concatenate([labels, also[1]])
    threshold = calibrated_threshold(labels, scores, target_fpr)
    return threshold, split_metrics(preds, samples, threshold)


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, out / "loss.png")


@dataclass
class FitProgress:
    """Where a run stands between epochs: carried over from last.ckpt when resuming."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    start: int = 0  # epochs already done


@dataclass
class FitJob:
    """What fitting a run needs, whichever way the head is fitted."""

    cfg: TrainConfig
    model: Detector
    train_set: ImageDataset
    val_set: ImageDataset
    device: torch.device
    progress: FitProgress
    save: Callable[..., None]  # save_checkpoint with the run's config and summaries bound
    console: Console


def fit_sgd(job: FitJob, optimizer: torch.optim.Optimizer) -> None:
    """The epochs left: train, validate and calibrate, write history.csv, model.ckpt when the
    epoch is kept and last.ckpt every time."""
    cfg, model, train_set, val_set = job.cfg, job.model, job.train_set, job.val_set
    device, progress, save, console = job.device, job.progress, job.save, job.console
    out, loss_fn = cfg.out, nn.CrossEntropyLoss()
    train_loader = make_loader(train_set, cfg.batch_size, cfg.workers, True, cfg.seed)
    val_loader = make_loader(val_set, cfg.batch_size, cfg.workers, False, cfg.seed)
    for epoch in range(progress.start, cfg.epochs):
        row = _train_epoch(model, train_loader, optimizer, loss_fn, device, epoch, cfg, console)
        val = predict(model, val_loader, device)
        threshold, val_metrics = calibrate(val, val_set.samples, cfg.target_fpr)
        row |= {
            "val_loss": val.loss,
            "val_acc": val_metrics["accuracy"],
            "val_auc": val_metrics["roc_auc"],
            "lr": optimizer.param_groups[0]["lr"],
        }
        progress.history.append(row)
        write_history(out, progress.history)
        state = {"threshold": threshold, "metrics": {"val": val_metrics}, "epoch": epoch + 1}
        # a validation split of a few dozen images is a noisy judge: "last" trusts the schedule
        if val.loss < progress.best_loss or cfg.keep == "last":
            progress.best_loss, progress.best_epoch = min(progress.best_loss, val.loss), epoch + 1
            save(out / "model.ckpt", model, **state)
        console.print(_epoch_line(row, cfg.epochs, best=progress.best_epoch == epoch + 1))
        save(
            out / "last.ckpt",
            model,
            **state,
            optimizer=optimizer.state_dict(),
            history=progress.history,
            best_val_loss=progress.best_loss,
            best_epoch=progress.best_epoch,
        )


def _epoch_line(row: dict[str, Any], epochs: int, best: bool) -> str:
    """The log line of one epoch, from its history row."""
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.3f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} "
        f"auc {num(row['val_auc'], NA)}  {row['step_seconds']:.2f} s/step "
        f"(data wait {row['data_wait_seconds']:.2f})" + ("  [green]best[/]" if best else "")
    )


def _train_epoch(model, loader, optimizer, loss_fn, device, epoch, cfg, console) -> dict[str, Any]:
    loader.dataset.set_epoch(epoch)
    loader.generator.manual_seed(cfg.seed + epoch)
    model.train()
    steps = len(loader) if cfg.max_steps is None else min(len(loader), cfg.max_steps)
    total_loss = correct = seen = skipped = 0
    wait = compute = 0.0
    started = tick = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, loss=0.0)
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            got = time.perf_counter()
            wait += got - tick
            skipped += len(batch["skipped"])
            if len(batch["y"]):
                x, y = batch["x"].to(device, non_blocking=True), batch["y"].to(device)
                optimizer.zero_grad(set_to_none=True)
                logits = model(x)
                loss = loss_fn(logits, y)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
            tick = time.perf_counter()
            compute += tick - got
            progress.update(task, advance=1, loss=total_loss / max(seen, 1))
    return {
        "epoch": epoch + 1,
        "train_loss": total_loss / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "seconds": time.perf_counter() - started,
        "step_seconds": compute / max(steps, 1),
        "data_wait_seconds": wait / max(steps, 1),
        "skipped": skipped,
    }


def fit_lbfgs(job: FitJob) -> None:
    """``head_fit lbfgs``: the features of ``epochs`` augmented passes, one exact fit of the
    linear head (:mod:`dfscan.train.fit.probe`), validated and saved as a single epoch."""
    cfg, model, train_set, val_set = job.cfg, job.model, job.train_set, job.val_set
    device, progress, save, console = job.device, job.progress, job.save, job.console
    from .probe import fit_head

    loader = make_loader(train_set, cfg.batch_size, cfg.workers, True, cfg.seed)
    started = time.perf_counter()

    def passes():
        for epoch in range(cfg.epochs):
            train_set.set_epoch(epoch)
            loader.generator.manual_seed(cfg.seed + epoch)
            yield loader

    head = fit_head(
        model,
        passes(),
        device,
        train_set.samples,
        cfg.head_l2,
        console.print,
        cfg.cv_reals,
        cfg.head_blocks,
    )
    fit = head.stats
    val = predict(model, make_loader(val_set, cfg.batch_size, cfg.workers, False, cfg.seed), device)
    # a few dozen val reals set a noisy quantile: pool them with the training reals'
    # out-of-fold scores (photos, or whole sources, their fold's head never saw), many more
    pooled = cfg.target_fpr > 0 and bool((head.oof_labels == REAL_LABEL).any())
    also = (head.oof_p_fake, head.oof_labels) if pooled else None
    threshold, val_metrics = calibrate(val, val_set.samples, cfg.target_fpr, also)
    rule = threshold_rule(cfg.target_fpr, pooled, fit["cv_reals"] == "sources")
    seconds = time.perf_counter() - started
    row = {
        "epoch": 1,
        "train_loss": fit["objective"],
        "train_acc": fit["train_acc"],
        "val_loss": val.loss,
        "val_acc": val_metrics["accuracy"],
        "val_auc": val_metrics["roc_auc"],
        "lr": 0.0,
        "seconds": seconds,
        "step_seconds": seconds / max(fit["views"], 1),
        "data_wait_seconds": 0.0,
        "skipped": 0,
    }
    progress.history = [row]
    progress.best_loss, progress.best_epoch = val.loss, 1
    write_history(cfg.out, progress.history)
    state = {"threshold": threshold, "metrics": {"val": val_metrics}, "epoch": 1}
    save(cfg.out / "model.ckpt", model, **state, threshold_rule=rule, head_fit=fit)
    console.print(_epoch_line(row, 1, best=True))

"""Figures: loss curves and confusion matrices (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from dfscan.scanner.labels import CLASSES


def plot_history(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Train/val loss and accuracy per epoch, side by side."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=key)
        ax_acc.plot(epochs, [h[f"{key}_acc"] for h in history], style, label=key)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_confusion(
    ax: Any,
    matrix: Sequence[Sequence[int]],
    title: str,
    labels: Sequence[str] = CLASSES,
    fontsize: int = 12,
) -> None:
    """A count matrix with its numbers written in, readable on light and dark cells."""
    ax.imshow(matrix, cmap="Blues", vmin=0)
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=fontsize)
    ticks = max(6, fontsize - 4)
    ax.set_xticks(range(len(labels)), [f"pred {x}" for x in labels], fontsize=ticks)
    ax.set_yticks(range(len(labels)), [f"true {x}" for x in labels], fontsize=ticks)
    ax.set_title(title, fontsize=max(8, fontsize - 2))


def plot_confusion(
    matrix: Sequence[Sequence[int]],
    title: str,
    path: Path,
    labels: Sequence[str] = CLASSES,
) -> None:
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    draw_confusion(ax, matrix, title, labels)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

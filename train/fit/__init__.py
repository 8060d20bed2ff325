"""Fitting a detector: the config and its recipes, the training loop, the exact head, prediction,
metrics and evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .config import TrainConfig
    from .evaluate import evaluate
    from .loop import TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "train",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "TrainConfig": ".config",
        "TrainResult": ".loop",
        "evaluate": ".evaluate",
        "train": ".loop",
    },
)

"""Experiment grids over settings, their results table and HTML report, and Grad-CAM
explanations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .explain import explain
    from .run import run_experiments

__all__ = [
    "explain",
    "run_experiments",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "explain": ".explain",
        "run_experiments": ".run",
    },
)

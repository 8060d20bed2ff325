"""Hold-out experiments: generator families and real-photo sources held out whole, scored per
fold with exact binomial intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .run import run_holdout
    from .split import plan_folds

__all__ = [
    "plan_folds",
    "run_holdout",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "plan_folds": ".split",
        "run_holdout": ".run",
    },
)

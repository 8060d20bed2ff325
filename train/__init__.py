"""dfscan's training part (the ``[train]`` extra): detectors, data, fitting, experiments.

``from dfscan.train import TrainConfig, train, create_model`` is the library's way in; the
subpackages are ``models``, ``data``, ``fit``, ``experiments`` and ``holdout``. Nothing here
imports torch until a name is used, so the CLI plugin stays cheap to register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .experiments.run import run_experiments
    from .fit.config import TrainConfig
    from .fit.evaluate import evaluate
    from .fit.loop import TrainResult, train
    from .holdout.run import run_holdout
    from .models.registry import create_model, list_models

__all__ = [
    "TrainConfig",
    "TrainResult",
    "create_model",
    "evaluate",
    "list_models",
    "run_experiments",
    "run_holdout",
    "train",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "TrainConfig": ".fit.config",
        "TrainResult": ".fit.loop",
        "create_model": ".models.registry",
        "evaluate": ".fit.evaluate",
        "list_models": ".models.registry",
        "run_experiments": ".experiments.run",
        "run_holdout": ".holdout.run",
        "train": ".fit.loop",
    },
)

"""Detectors: backbones, the registry (``create_model``, ``list_models``), the preprocessing
front end inside the model, checkpoints and Grad-CAM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .detector import Detector
    from .registry import create_model, list_models

__all__ = [
    "Detector",
    "create_model",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "Detector": ".detector",
        "create_model": ".registry",
        "list_models": ".registry",
        "load_checkpoint": ".checkpoint",
        "save_checkpoint": ".checkpoint",
    },
)

"""The detector as the scanner runs it: its spec, host-side preprocessing (decode, orientation,
crop or resize), ONNX Runtime sessions and devices, and the built-in detector."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .builtin import builtin_model, resolve_model
    from .detector import Detector
    from .meta import ModelMeta, read_model_meta
    from .preprocess import PreprocessConfig, load_image
    from .runtime import parse_device
    from .spec import DetectorSpec

__all__ = [
    "Detector",
    "DetectorSpec",
    "ModelMeta",
    "PreprocessConfig",
    "builtin_model",
    "load_image",
    "parse_device",
    "read_model_meta",
    "resolve_model",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "Detector": ".detector",
        "DetectorSpec": ".spec",
        "ModelMeta": ".meta",
        "PreprocessConfig": ".preprocess",
        "builtin_model": ".builtin",
        "load_image": ".preprocess",
        "parse_device": ".runtime",
        "read_model_meta": ".meta",
        "resolve_model": ".builtin",
    },
)

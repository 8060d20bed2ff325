"""timm-style registry of detector architectures.

An entrypoint builds a :class:`StagedBackbone` (optionally with ImageNet weights) and declares
the normalisation its pretraining used; :func:`create_model` puts the frontend and head around
it. ``list_models()`` drives the parametrised tests, so every registered arch is trained,
checkpointed and exported in CI. The table and :func:`register_model` live in
:mod:`dfscan.train.models.arch_table`; importing this module registers the built-in backbones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from dfscan.scanner.errors import ModelError

from . import backbones  # noqa: F401  (registers the built-in archs)
from ._checkpoint_format import checkpoint_arch, is_dfscan_checkpoint
from .arch_table import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArchSpec,
    BackboneBuilder,
    lookup,
    register_model,
)
from .detector import Detector, parse_train_layers
from .frontend import FFTFrontend, SpatialFrontend

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUTS",
    "ArchSpec",
    "BackboneBuilder",
    "InputVariant",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]

InputVariant = Literal["spatial", "fft"]
INPUTS: tuple[InputVariant, ...] = ("spatial", "fft")


def list_models() -> list[str]:
    return sorted(ARCHS)


def get_spec(name: str) -> ArchSpec:
    return lookup(name)


def create_model(
    name: str,
    input: InputVariant = "spatial",
    weights: str | Path | None = "none",
    train_layers: str | Sequence[str] | None = None,
    size: int = 224,
) -> Detector:
    """Build a detector. ``weights``: ``imagenet`` | ``none`` | path to a weights file.

    A path may hold the backbone's own state dict (e.g. torchvision's ``resnet50-*.pth``) or a
    dfscan checkpoint, whose backbone and head are then loaded (fine-tuning a fine-tune).
    """
    spec = get_spec(name)
    if input not in INPUTS:
        raise ModelError(f"unknown input variant {input!r}; choose from {INPUTS}")
    if input not in spec.inputs:
        raise ModelError(f"{name} takes {' or '.join(spec.inputs)} input, not {input}")
    w = "none" if weights is None else str(weights)
    checkpoint = None
    if w not in ("imagenet", "none"):
        from .weights import read_state_dict

        state = read_state_dict(Path(w))
        checkpoint = state if is_dfscan_checkpoint(state) else None
    backbone = spec.backbone(None if w == "none" or checkpoint is not None else w, size)
    frontend = FFTFrontend(size) if input == "fft" else SpatialFrontend(spec.mean, spec.std)
    model = Detector(frontend, backbone, hidden=spec.head_hidden)
    if checkpoint is not None:
        if checkpoint_arch(checkpoint) != name:
            raise ModelError(f"{w} is a {checkpoint_arch(checkpoint)} checkpoint, not {name}")
        model.load_state_dict(checkpoint["state_dict"])
    model.set_trainable(parse_train_layers(train_layers, spec.default_train_layers))
    return model

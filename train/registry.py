"""timm-style registry of detector architectures.

An entrypoint builds a :class:`StagedBackbone` (optionally with ImageNet weights) and declares
the normalisation its pretraining used; :func:`create_model` puts the frontend and head around
it. ``list_models()`` drives the parametrised tests, so every registered arch is trained,
checkpointed and exported in CI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dfscan.scanner.errors import ModelError
from dfscan.train.checkpoint_format import is_dfscan_checkpoint
from dfscan.train.detector import Detector, StagedBackbone, parse_train_layers
from dfscan.train.frontend import FFTFrontend, SpatialFrontend

InputVariant = Literal["spatial", "fft"]
INPUTS: tuple[InputVariant, ...] = ("spatial", "fft")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# builder(weights) -> backbone; weights is None, "imagenet" (may download) or the path of a
# state dict in the underlying network's own format (e.g. torchvision's resnet50-*.pth)
BackboneBuilder = Callable[[str | None], StagedBackbone]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: BackboneBuilder
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_train_layers: tuple[str, ...] = ("layer3", "layer4")
    description: str = ""
    head_hidden: int = 128  # the seed's head 2048→128→ReLU→2; 0 = linear


_REGISTRY: dict[str, ArchSpec] = {}


def register_model(
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    default_train_layers: tuple[str, ...] = ("layer3", "layer4"),
    head_hidden: int = 128,
) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def wrap(fn: BackboneBuilder) -> BackboneBuilder:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[fn.__name__] = ArchSpec(
            fn.__name__, fn, mean, std, default_train_layers, doc[0] if doc else "", head_hidden
        )
        return fn

    return wrap


def _ensure_builtin() -> None:
    from dfscan.train import backbones  # noqa: F401  (registers the built-in archs)


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ArchSpec:
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown architecture {name!r}", hint=f"available: {', '.join(sorted(_REGISTRY))}"
        ) from None


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
    w = "none" if weights is None else str(weights)
    checkpoint = None
    if w not in ("imagenet", "none"):
        from dfscan.train.weights import read_state_dict

        state = read_state_dict(Path(w))
        checkpoint = state if is_dfscan_checkpoint(state) else None
    backbone = spec.build(None if w == "none" or checkpoint is not None else w)
    frontend = FFTFrontend(size) if input == "fft" else SpatialFrontend(spec.mean, spec.std)
    model = Detector(frontend, backbone, hidden=spec.head_hidden)
    if checkpoint is not None:
        if checkpoint["config"]["arch"] != name:
            raise ModelError(f"{w} is a {checkpoint['config']['arch']} checkpoint, not {name}")
        model.load_state_dict(checkpoint["state_dict"])
    model.set_trainable(parse_train_layers(train_layers, spec.default_train_layers))
    return model

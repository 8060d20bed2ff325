"""The table of detector architectures and the decorator that fills it.

Kept apart from :mod:`dfscan.train.models.registry` so the built-in backbones can register
themselves
without importing the module that builds detectors from them: imports point one way,
``registry → backbones → arch_table``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dfscan.scanner.errors import ModelError

from .detector import StagedBackbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RGB = tuple[float, float, float]


def rgb(values: Iterable[Any]) -> RGB:
    """A library's per-channel mean or std (a list, a tuple of numpy floats …) as three floats."""
    r, g, b = (float(v) for v in values)
    return r, g, b


# builder(weights) -> backbone; weights is None, "imagenet" (may download) or the path of a
# state dict in the underlying network's own format (e.g. torchvision's resnet50-*.pth)
BackboneBuilder = Callable[[str | None], StagedBackbone]
# builder(weights, side) -> the backbone built for ``side``-pixel inputs: a token backbone whose
# library resamples its position table (timm's img_size, open_clip's force_image_size)
SizedBuilder = Callable[[str | None, int], StagedBackbone]


@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: BackboneBuilder
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_train_layers: tuple[str, ...] = ("layer3", "layer4")
    description: str = ""
    head_hidden: int = 128  # the seed's head 2048→128→ReLU→2; 0 = linear
    short: str = ""  # in experiment run names (r50-spatial-…); the name itself when empty
    input_size: int | None = None  # the side it was pretrained at (the default of build_at)
    inputs: tuple[str, ...] = ("spatial", "fft")  # the input variants it can read
    build_at: SizedBuilder | None = None  # for a token backbone that can take another side

    @property
    def short_name(self) -> str:
        return self.short or self.name

    def backbone(self, weights: str | None, side: int) -> StagedBackbone:
        """The backbone for ``side``-pixel inputs: a token backbone pretrained at another side is
        built by its library with the position table resampled (as timm and open_clip do with
        pretrained weights at another image size), or refused in one line if it cannot be."""
        if self.build_at is not None:
            return self.build_at(weights, side)
        backbone = self.build(weights)
        native = self.input_size
        if backbone.fixed_input and native and side != native:
            raise ModelError(  # else the library's own assertion, deep in the first forward
                f"{self.name} takes {native}×{native} inputs (its positional embedding is "
                f"fixed), not {side}×{side}",
                hint=f"pass --size {native}",
            )
        return backbone


ARCHS: dict[str, ArchSpec] = {}


def register_model(
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    default_train_layers: tuple[str, ...] = ("layer3", "layer4"),
    head_hidden: int = 128,
    short: str = "",
) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Register ``fn`` under its own name; its docstring's first line describes it."""

    def wrap(fn: BackboneBuilder) -> BackboneBuilder:
        doc = (fn.__doc__ or "").strip().splitlines()
        description = doc[0] if doc else ""
        ARCHS[fn.__name__] = ArchSpec(
            fn.__name__, fn, mean, std, default_train_layers, description, head_hidden, short
        )
        return fn

    return wrap


# ``prefix:rest`` names resolve through a module: "module:function" that takes ``rest`` and
# returns its ArchSpec (named ``prefix:rest``), imported only when such a name is used.
PREFIXES = {
    "timm": "dfscan.train.models.timm_backbones:arch_spec",
    "open_clip": "dfscan.train.models.clip_backbones:arch_spec",
    "fuse": "dfscan.train.models.fusion:arch_spec",
}


def lookup(name: str) -> ArchSpec:
    if name in ARCHS:
        return ARCHS[name]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in PREFIXES:
        module, _, function = PREFIXES[prefix].partition(":")
        build: Callable[[str], ArchSpec] = getattr(importlib.import_module(module), function)
        return build(rest)
    raise ModelError(
        f"unknown architecture {name!r}",
        hint=f"available: {', '.join(sorted(ARCHS))}, or timm:<name>, open_clip:<name>[:<tag>], "
        "fuse:<arch>,<arch>",
    )

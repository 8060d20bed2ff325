"""The detector network: frontend → staged backbone → the seed's head."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

STAGES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")
"""Uniform stage names for every backbone, by output stride: stem ≤ 4, layer1 4, layer2 8,
layer3 16, layer4 32 — so "train layer3+layer4" means the same depth for every arch."""


Layout = Literal["nchw", "nlc", "branches"]
"""How stages hand over their output: feature maps (CNNs), token sequences (ViTs), or one
output per branch of networks run side by side (:mod:`.fusion`)."""


class StagedBackbone(nn.Module):
    """Named stages run in order, then pooling to a feature vector.

    With ``stats_of`` (stage names), the features are instead the per-channel mean and standard
    deviation of each of those stages' outputs: low stages see pixel-level statistics (noise,
    upsampling and demosaicing traces), which a detector needs beside what the last stage sees.
    A token backbone (``layout="nlc"``) gives the mean and std of each channel over its patch
    tokens (prefix tokens such as CLS left out), followed by its pooled embedding, which a token
    model keeps in CLS rather than spreading over the patches.

    ``pool`` (default: global average over the map) turns the last stage's output into the
    embedding; a library backbone passes its own (a ViT's CLS token and final norm).
    """

    def __init__(
        self,
        stages: Mapping[str, nn.Module],
        num_features: int,
        stats_of: tuple[str, ...] = (),
        channels: dict[str, int] | None = None,
        *,
        pool: nn.Module | None = None,
        layout: Layout = "nchw",
        prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        if tuple(stages) != STAGES:
            raise ValueError(f"backbone stages must be {STAGES}, got {tuple(stages)}")
        self.stages = nn.ModuleDict(stages)
        self.stats_of = tuple(s for s in STAGES if s in stats_of)
        self.layout = layout
        self.prefix_tokens = prefix_tokens
        self.embedding_features = num_features
        if self.stats_of:
            if channels is None:
                raise ValueError("stats pooling needs the channel count of every stage")
            stats = sum(2 * channels[s] for s in self.stats_of)
            num_features = stats + (num_features if layout == "nlc" else 0)
        self.num_features = num_features
        # widths of the feature groups the probe's penalty balances (a fused backbone's branches)
        self.feature_blocks: tuple[int, ...] = (num_features,)
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        # the statistics of different stages differ by orders of magnitude: standardise them
        self.norm: RunningStandardize | None = (
            RunningStandardize(num_features) if self.stats_of else None
        )

    @property
    def fixed_input(self) -> bool:
        """Whether the network takes one input side only, the one it was built for (a ViT's
        position table; :meth:`ArchSpec.backbone` builds it for another)."""
        return self.layout == "nlc"

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        return features if self.norm is None else self.norm(features)

    def features(self, x: Tensor) -> Tensor:
        """The features before standardisation (a fused backbone standardises them together)."""
        if not self.stats_of:
            for stage in self.stages.values():
                x = stage(x)
            return self.pool(x).flatten(1)
        feats = []
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.stats_of:
                feats += self._stats(x)
        if self.layout == "nlc":
            feats.append(self.pool(x).flatten(1))
        return torch.cat(feats, dim=1)

    def _stats(self, x: Tensor) -> list[Tensor]:
        """Per-channel mean and std over positions: pixels of a map, or patch tokens."""
        if self.layout == "nlc":
            flat, dim = x[:, self.prefix_tokens :], 1
        else:
            flat, dim = x.flatten(2), 2
        mean = flat.mean(dim=dim)
        std = (flat - mean.unsqueeze(dim)).pow(2).mean(dim=dim).add(1e-6).sqrt()
        return [mean, std]


class RunningStandardize(nn.Module):
    """(x − mean) / std with the mean and variance of every sample seen in training.

    Unlike BatchNorm, training also divides by the running estimates (updated first with the
    batch), not by the batch's own: a linear head then sees the same scaling in training and
    inference, and a batch of 32 adds no noise of its own. A frozen backbone's features do not
    drift, so every sample counts equally (Chan's parallel update). No parameters.
    """

    count: Tensor
    mean: Tensor
    m2: Tensor
    scale_mean: Tensor
    scale_std: Tensor

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(features, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(features, dtype=torch.float64))
        self.register_buffer("scale_mean", torch.zeros(features))
        self.register_buffer("scale_std", torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                xb = x.detach().double()
                n, mean_b = xb.shape[0], xb.mean(0)
                m2_b = (xb - mean_b).pow(2).sum(0)
                total = self.count + n
                delta = mean_b - self.mean
                self.mean += delta * (n / total)
                self.m2 += m2_b + delta.pow(2) * (self.count * n / total)
                self.count.fill_(total)
                self.scale_mean.copy_(self.mean.float())
                self.scale_std.copy_((self.m2 / total).add(self.eps).sqrt().float())
        return (x - self.scale_mean) / self.scale_std


class Detector(nn.Module):
    """real/fake classifier; input NCHW RGB, uint8 or float in [0, 1]; output logits (N, 2).

    ``train()`` keeps frozen stages in eval mode so their BatchNorm statistics stay those of
    pretraining (a frozen stage must behave the same in training and inference).
    """

    def __init__(
        self, frontend: nn.Module, backbone: StagedBackbone, hidden: int = 128, classes: int = 2
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        # hidden 0: a linear head (a probe), for features that are already rich, where an
        # MLP over few hundred images overfits
        layers = [nn.Linear(backbone.num_features, hidden), nn.ReLU(inplace=True)] if hidden else []
        self.head = nn.Sequential(*layers, nn.Linear(hidden or backbone.num_features, classes))
        self.trainable: tuple[str, ...] = (*STAGES, "head")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(self.frontend(x)))

    def set_trainable(self, parts: Iterable[str]) -> None:
        parts = tuple(parts)
        unknown = sorted(set(parts) - {*STAGES, "head"})
        if unknown:
            raise ModelError(f"unknown layers {unknown}; choose from {[*STAGES, 'head']}")
        self.trainable = tuple(p for p in (*STAGES, "head") if p in parts)
        for name, stage in self.backbone.stages.items():
            stage.requires_grad_(name in self.trainable)
        # a library's pooling (final norm, projection, attention pool) trains with the last stage
        self.backbone.pool.requires_grad_("layer4" in self.trainable)
        self.head.requires_grad_("head" in self.trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        if mode:
            for name, stage in self.backbone.stages.items():
                if name not in self.trainable:
                    stage.eval()
            if "layer4" not in self.trainable:
                self.backbone.pool.eval()
        return self


def layer_list(spec: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """``layer3,layer4`` / ``layer3+layer4`` / a sequence / None (→ ``default``) as a list."""
    if spec is None:
        return list(default)
    if isinstance(spec, str):
        return [p.strip() for p in spec.replace("+", ",").split(",") if p.strip()]
    return list(spec)


def parse_train_layers(spec: str | Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """``head`` | ``all`` | comma list of stages (``layer3,layer4``); the head always trains."""
    parts = layer_list(spec, default)
    if parts == ["all"]:
        return (*STAGES, "head")
    unknown = sorted(set(parts) - {*STAGES, "head"})
    if unknown:
        raise ModelError(
            f"unknown --train-layers {unknown}",
            hint=f"use 'head', 'all' or a comma list of {', '.join(STAGES)}",
        )
    return tuple(p for p in (*STAGES, "head") if p in {*parts, "head"})

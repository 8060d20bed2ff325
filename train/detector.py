"""The detector network: frontend → staged backbone → the seed's head."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

STAGES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")
"""Uniform stage names for every backbone, by output stride: stem ≤ 4, layer1 4, layer2 8,
layer3 16, layer4 32 — so "train layer3+layer4" means the same depth for every arch."""


class StagedBackbone(nn.Module):
    """Named stages run in order, then global average pooling to a feature vector.

    With ``stats_of`` (stage names), the features are instead the per-channel mean and standard
    deviation of each of those stages' outputs: low stages see pixel-level statistics (noise,
    upsampling and demosaicing traces), which a detector needs beside what the last stage sees.
    """

    def __init__(
        self,
        stages: dict[str, nn.Module],
        num_features: int,
        stats_of: tuple[str, ...] = (),
        channels: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if tuple(stages) != STAGES:
            raise ValueError(f"backbone stages must be {STAGES}, got {tuple(stages)}")
        self.stages = nn.ModuleDict(stages)
        self.stats_of = tuple(s for s in STAGES if s in stats_of)
        if self.stats_of:
            if channels is None:
                raise ValueError("stats pooling needs the channel count of every stage")
            num_features = sum(2 * channels[s] for s in self.stats_of)
        self.num_features = num_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        # the statistics of different stages differ by orders of magnitude: standardise them
        # (running estimates, no parameters, so a frozen backbone stays frozen)
        self.norm = nn.BatchNorm1d(num_features, affine=False) if self.stats_of else None

    def forward(self, x: Tensor) -> Tensor:
        if not self.stats_of:
            for stage in self.stages.values():
                x = stage(x)
            return self.pool(x).flatten(1)
        feats = []
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.stats_of:
                flat = x.flatten(2)
                mean = flat.mean(dim=2)
                std = (flat - mean.unsqueeze(2)).pow(2).mean(dim=2).add(1e-6).sqrt()
                feats += [mean, std]
        return self.norm(torch.cat(feats, dim=1))


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
        self.head = nn.Sequential(
            nn.Linear(backbone.num_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, classes),
        )
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
        self.head.requires_grad_("head" in self.trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        if mode:
            for name, stage in self.backbone.stages.items():
                if name not in self.trainable:
                    stage.eval()
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

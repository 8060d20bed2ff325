"""Checkpoints that carry everything needed to rebuild and use a detector.

Plain tensors and containers only, so ``torch.load(..., weights_only=True)`` reads them: no
pickled code runs on load. nanoGPT-style, the model is rebuilt from ``config``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dfscan.scanner import __version__
from dfscan.scanner.errors import ModelError
from dfscan.scanner.preprocess import PreprocessConfig
from dfscan.train.checkpoint_format import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    is_dfscan_checkpoint,
)
from dfscan.train.dataset_folder import CLASSES
from dfscan.train.detector import Detector
from dfscan.train.registry import create_model, get_spec
from dfscan.train.weights import safe_load


@dataclass(frozen=True)
class ModelConfig:
    """What a detector is: enough to rebuild it and to feed it."""

    arch: str
    input: str
    preprocess: PreprocessConfig
    train_layers: tuple[str, ...]
    classes: tuple[str, ...] = CLASSES
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(
            arch=d["arch"],
            input=d["input"],
            preprocess=PreprocessConfig.from_dict(d["preprocess"]),
            train_layers=tuple(d["train_layers"]),
            classes=tuple(d["classes"]),
            mean=tuple(d.get("mean", ())),
            std=tuple(d.get("std", ())),
        )

    @classmethod
    def for_model(cls, arch: str, input: str, preprocess: PreprocessConfig, model: Detector):
        spec = get_spec(arch)
        return cls(arch, input, preprocess, model.trainable, CLASSES, spec.mean, spec.std)


def build_model(config: ModelConfig) -> Detector:
    return create_model(
        config.arch,
        config.input,
        weights="none",
        train_layers=config.train_layers,
        size=config.preprocess.size,
    )


def write_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """tmp + rename: an interrupted save never leaves a half-written checkpoint behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, model: Detector, config: ModelConfig, **fields: Any) -> None:
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "dfscan_version": __version__,
        "torch_version": str(torch.__version__),
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **fields,
    }
    write_atomic(payload, path)


@dataclass
class LoadedCheckpoint:
    model: Detector
    config: ModelConfig
    data: dict[str, Any]

    @property
    def threshold(self) -> float:
        return float(self.data.get("threshold", 0.5))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    data = safe_load(path, "checkpoint")
    if not is_dfscan_checkpoint(data):
        raise ModelError(f"{path} is not a dfscan checkpoint", hint="train one with dfscan train")
    if data.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ModelError(f"{path} was written by a newer dfscan ({data.get('dfscan_version')})")
    return data


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    data = read_checkpoint(path)
    config = ModelConfig.from_dict(data["config"])
    model = build_model(config)
    model.load_state_dict(data["state_dict"])
    model.to(device).eval()
    return LoadedCheckpoint(model, config, data)

"""Checkpoints that carry everything needed to rebuild and use a detector.

Plain tensors and containers only, so ``torch.load(..., weights_only=True)`` reads them: no
pickled code runs on load. nanoGPT-style, the model is rebuilt from ``config``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dfscan.scanner import __version__
from dfscan.scanner.errors import ModelError
from dfscan.scanner.labels import CLASSES
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.scanner.model.spec import UNCALIBRATED, DetectorSpec, SpecView, Threshold, legacy_spec

from ._checkpoint_format import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    is_dfscan_checkpoint,
)
from .detector import Detector
from .frontend import FFT_LOG_STD, FFTFrontend, SpatialFrontend, frontend_from_spec
from .registry import create_model
from .weights import safe_load


@dataclass(frozen=True)
class ModelConfig(SpecView):
    """What a detector is (its :class:`DetectorSpec`) and which stages were trained."""

    spec: DetectorSpec
    train_layers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "train_layers": list(self.train_layers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "checkpoint") -> ModelConfig:
        return cls(DetectorSpec.from_dict(d["spec"], source), tuple(d["train_layers"]))

    @classmethod
    def for_model(
        cls, arch: str, input: str, preprocess: PreprocessConfig, model: Detector
    ) -> ModelConfig:
        """The config of a freshly built model: its frontend's own constants, no thresholds."""
        frontend = model.frontend  # typed nn.Module on Detector; create_model builds one of two
        if not isinstance(frontend, SpatialFrontend | FFTFrontend):
            raise ModelError(f"a detector's frontend has no recipe: {type(frontend).__name__}")
        recipe = frontend.recipe()
        if recipe.variant != input:
            raise ModelError(f"the model's frontend is {recipe.variant}, not {input}")
        return cls(DetectorSpec(arch, recipe, preprocess, CLASSES), model.trainable)


def build_model(config: ModelConfig) -> Detector:
    """Rebuild the network from the spec: the registry gives the layers, the spec the maths."""
    spec = config.spec
    model = create_model(
        spec.arch,
        spec.input,  # type: ignore[arg-type]  # a str in the spec; create_model checks INPUTS
        weights="none",
        train_layers=config.train_layers,
        size=spec.preprocess.size,
    )
    model.frontend = frontend_from_spec(spec.frontend, spec.preprocess.size)
    return model


def write_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """tmp + rename: an interrupted save never leaves a half-written checkpoint behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(
    path: str | Path,
    model: Detector,
    config: ModelConfig,
    threshold: float | None = None,
    threshold_rule: str | None = None,
    **fields: Any,
) -> None:
    """Write the weights with their spec; the fp32 ``threshold`` goes into the spec.

    A checkpoint saved without one carries 0.5 under the rule ``uncalibrated_default``, so an
    export of it says that no data chose its threshold.
    """
    spec = config.spec.with_threshold(
        "fp32",
        0.5 if threshold is None else float(threshold),
        UNCALIBRATED if threshold is None else (threshold_rule or "unrecorded"),
    )
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "dfscan_version": __version__,
        "torch_version": str(torch.__version__),
        "config": replace(config, spec=spec).to_dict(),
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
    def spec(self) -> DetectorSpec:
        return self.config.spec

    @property
    def threshold(self) -> float:
        return self.spec.threshold("fp32").value

    @property
    def threshold_rule(self) -> str:
        return self.spec.threshold("fp32").rule


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, a format-1 one brought to the current format (or refused)."""
    data = safe_load(path, "checkpoint")
    if not is_dfscan_checkpoint(data):
        raise ModelError(f"{path} is not a dfscan checkpoint", hint="train one with dfscan train")
    version = data.get("format_version", 0)
    if version > CHECKPOINT_VERSION:
        raise ModelError(f"{path} was written by a newer dfscan ({data.get('dfscan_version')})")
    if version < CHECKPOINT_VERSION:
        data = _upgrade_v1(data, str(path))
    return data


def _upgrade_v1(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Format 1 kept the config flat and the threshold beside it; mean/std may be missing."""
    old = data["config"]
    variant = old["input"]
    if variant == "fft":
        constants: dict[str, Any] = {"log_std": FFT_LOG_STD}  # recipe 1's, unchanged since
    elif old.get("mean") and old.get("std"):
        constants = {"mean": list(old["mean"]), "std": list(old["std"])}
    else:
        raise ModelError(
            f"{source} is a format-1 checkpoint without its normalisation (mean/std)",
            hint="retrain it with this dfscan",
        )
    size, mode = int(old["preprocess"]["size"]), old["preprocess"]["mode"]
    threshold = data.pop("threshold", None)
    rule = data.pop("threshold_rule", None) or (
        "unrecorded" if threshold is not None else UNCALIBRATED
    )
    spec = legacy_spec(
        old["arch"],
        variant,
        PreprocessConfig(size=size, mode=mode),
        tuple(old.get("classes") or CLASSES),
        constants,
        {"fp32": Threshold(0.5 if threshold is None else float(threshold), rule)},
        source,
    )
    config = ModelConfig(spec, tuple(old["train_layers"]))
    return {**data, "format_version": CHECKPOINT_VERSION, "config": config.to_dict()}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    data = read_checkpoint(path)
    config = ModelConfig.from_dict(data["config"], str(path))
    model = build_model(config)
    model.load_state_dict(data["state_dict"])
    model.to(device).eval()
    return LoadedCheckpoint(model, config, data)

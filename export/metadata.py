"""The ModelMeta of an export, from what the checkpoint recorded at training time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from dfscan.scanner import __version__
from dfscan.scanner.model.meta import ModelMeta
from dfscan.train.models.checkpoint import LoadedCheckpoint


def training_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Generators, counts per split and split hash; the dataset's folder name, not its path
    (a model file that travels should not carry the trainer's directory layout)."""
    summary = dict(data.get("data") or {})
    if "root" in summary:
        summary["root"] = Path(str(summary["root"])).name
    config = data.get("train_config") or {}
    keep = ("epochs", "batch_size", "lr", "weights", "seed", "augment")
    summary["train_config"] = {k: config[k] for k in keep if k in config}
    summary["trained_with"] = {
        "dfscan": data.get("dfscan_version", "unknown"),
        "torch": data.get("torch_version", "unknown"),
    }
    return summary


def build_meta(loaded: LoadedCheckpoint, precision: str) -> ModelMeta:
    """The checkpoint's spec, its fp32 threshold carried to fp16 (checked by ``--check``);
    int8 gets its own threshold later, from calibration."""
    spec = loaded.spec
    if precision == "fp16":
        fp32 = spec.threshold("fp32")
        spec = spec.with_threshold("fp16", fp32.value, f"fp32 threshold ({fp32.rule})")
    return ModelMeta(
        spec=spec,
        precision=precision,
        training=training_summary(loaded.data),
        metrics=dict(loaded.data.get("metrics") or {}),
        versions={
            "dfscan": __version__,
            "torch": str(torch.__version__),
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    )

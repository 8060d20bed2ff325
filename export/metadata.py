"""The ModelMeta of an export, from what the checkpoint recorded at training time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch

from dfscan.scanner import __version__
from dfscan.scanner.model_meta import ModelMeta
from dfscan.train.checkpoint import LoadedCheckpoint


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
    cfg, data = loaded.config, loaded.data
    return ModelMeta(
        arch=cfg.arch,
        input=cfg.input,
        preprocess=cfg.preprocess,
        classes=tuple(cfg.classes),
        threshold=loaded.threshold,
        threshold_rule=str(data.get("threshold_rule", "")),
        precision=precision,
        training=training_summary(data),
        metrics=dict(data.get("metrics") or {}),
        versions={
            "dfscan": __version__,
            "torch": str(torch.__version__),
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    )

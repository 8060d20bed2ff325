"""Writes the ONNX files the base-install check scans; run it with the full install.

``python -m tests.base_install DIR`` writes ``DIR/brightness.onnx`` (the known-answer test
detector of :mod:`tests.onnx_models`) and ``DIR/exported.onnx`` (a real ``dfscan export`` of a
randomly initialised EfficientNet-Lite0 at 32², metadata and all). ``.ci/run`` then runs
``tests/scanner/test_base_install.py`` in a venv made with ``pip install .`` alone, pointed at DIR
by ``DFSCAN_BASE_MODELS``.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAMES = ("brightness.onnx", "exported.onnx")


def write_models(out: Path) -> dict[str, Path]:
    import torch

    from dfscan.export.exporter import export_checkpoint
    from dfscan.scanner.model.preprocess import PreprocessConfig
    from dfscan.train.models.checkpoint import ModelConfig, save_checkpoint
    from dfscan.train.models.registry import create_model

    from .onnx_models import brightness_model

    out.mkdir(parents=True, exist_ok=True)
    brightness_model(out / "brightness.onnx")
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", "spatial", weights="none", size=32).eval()
    config = ModelConfig.for_model("efficientnet_lite0", "spatial", PreprocessConfig(32), model)
    save_checkpoint(out / "exported.ckpt", model, config, threshold=0.5)
    export_checkpoint(out / "exported.ckpt", out / "exported.onnx")
    (out / "exported.ckpt").unlink()
    return {name: out / name for name in NAMES}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.base_install DIR")
    for path in write_models(Path(sys.argv[1])).values():
        print(path)

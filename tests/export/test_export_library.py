"""Library backbones export like registered ones: ONNX and TorchScript of a timm CNN, a timm
ViT, an open_clip tower and a fusion of two agree with eager (random weights, tiny configs:
nothing downloads), the spec inside each graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("timm")

from dfscan.export.exporter import export_checkpoint  # noqa: E402
from dfscan.scanner.model.meta import read_model_meta  # noqa: E402
from dfscan.scanner.model.preprocess import PreprocessConfig  # noqa: E402
from dfscan.train.models.checkpoint import ModelConfig, save_checkpoint  # noqa: E402
from dfscan.train.models.registry import create_model  # noqa: E402

from ..library_models import TIMM_CNN, TIMM_VIT, TINY_CLIP_SIZE, tiny_clip  # noqa: E402

CASES = {  # arch → side (a ViT's positional embedding fixes it)
    f"{TIMM_CNN}+stats": 64,
    TIMM_VIT: 160,
    "clip+stats": TINY_CLIP_SIZE,
    f"fuse:{TIMM_VIT},{TIMM_CNN}+stats": 160,  # two networks, two normalisations, one graph
}


def _checkpoint(path: Path, arch: str, size: int) -> Path:
    torch.manual_seed(0)
    model = create_model(arch, weights="none", size=size)
    model.train()
    with torch.no_grad():  # running standardisation of the stats variants: not the identity
        model(torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8))
    model.eval()
    config = ModelConfig.for_model(arch, "spatial", PreprocessConfig(size), model)
    save_checkpoint(path, model, config, threshold=0.5, threshold_rule="test")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_library_backbone_exports_and_agrees(case: str, tmp_path: Path) -> None:
    size = CASES[case]
    arch = case
    if case.startswith("clip"):
        pytest.importorskip("open_clip")
        arch = tiny_clip(tmp_path / "open_clip") + case.removeprefix("clip")
    ckpt = _checkpoint(tmp_path / "m.ckpt", arch, size)
    onnx_path, ts_path = tmp_path / "m.onnx", tmp_path / "m.ts"
    result = export_checkpoint(ckpt, onnx_path, ts_path, check=True, check_limit=8)

    report = result.parity
    assert report is not None and report.passed, report.failures()
    assert {"TorchScript", "ORT CPU", "eager export"} <= {r.runtime for r in report.rows}
    assert all(r.max_dp <= 1e-4 for r in report.rows)
    meta = read_model_meta(onnx_path)
    assert (meta.arch, meta.size) == (arch, size)  # the spec travels with the graph

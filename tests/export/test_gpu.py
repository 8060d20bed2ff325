"""CUDA checks (``pytest -m gpu``; .ci/gpu runs them on a GPU machine). Skipped where ONNX
Runtime's CUDA provider cannot open a session: they never fail for want of a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from dfscan.export.check_images import bundled_photos  # noqa: E402
from dfscan.export.exporter import export_checkpoint  # noqa: E402
from dfscan.export.parity import run_onnx  # noqa: E402
from dfscan.scanner.errors import DeviceError  # noqa: E402
from dfscan.scanner.model.runtime import CPU, load_session, open_session  # noqa: E402
from dfscan.train.models.checkpoint import load_checkpoint  # noqa: E402

from .test_export import random_checkpoint  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def _cuda_or_skip(tmp_path_factory) -> None:
    """Skip the module at once (before any export) where CUDA cannot run a tiny graph."""
    from ..onnx_models import brightness_model

    _cuda_session(brightness_model(tmp_path_factory.mktemp("probe") / "b.onnx"))


def _cuda_session(path: Path):
    try:
        return open_session(path, "cuda").session
    except DeviceError as exc:
        pytest.skip(f"no usable CUDA here: {exc.message}")


@pytest.fixture(scope="module")
def fft_model(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gpu")
    return random_checkpoint(tmp / "m.ckpt", "efficientnet_lite0", "fft", size=64)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_agrees_with_the_cpu(fft_model: Path, tmp_path: Path, precision: str):
    """The same graph, the same photos: CUDA EP against CPU EP (fp32 tight; fp16 by class and
    a loose score bound, the frontend's DFT staying in float32 in both)."""
    out = tmp_path / f"{precision}.onnx"
    export_checkpoint(fft_model, out, precision=precision)
    cuda = _cuda_session(out)
    batch = bundled_photos(load_checkpoint(fft_model).config.preprocess).batch
    on_cuda, on_cpu = run_onnx(cuda, batch), run_onnx(load_session(out, [CPU]), batch)
    dp = np.abs(on_cuda.p_fake - on_cpu.p_fake)
    if precision == "fp32":
        assert dp.max() <= 1e-4
    else:
        assert dp.max() <= 2e-2
        assert np.mean(on_cuda.logits.argmax(1) == on_cpu.logits.argmax(1)) >= 0.95


def test_the_detector_runs_batches_on_cuda(fft_model: Path, tmp_path: Path):
    from dfscan.scanner.model.detector import Detector

    out = tmp_path / "m.onnx"
    export_checkpoint(fft_model, out)
    _cuda_session(out)
    detector = Detector.from_onnx(out, "cuda")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    p_cuda = detector.run(images)
    p_cpu = Detector.from_onnx(out, "cpu").run(images)
    assert detector.provider.startswith("CUDA") and np.abs(p_cuda - p_cpu).max() <= 1e-4

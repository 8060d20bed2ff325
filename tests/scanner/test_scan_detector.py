"""Detector: the Python API, exact scores from a known graph, and refusal of foreign models."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfscan.scanner.errors import DataError, DeviceError, ModelError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.runtime import CPU, CUDA, available_providers

from ..conftest import write_image
from ..onnx_models import brightness_meta, brightness_model, grey


def test_predict_takes_paths_pil_images_and_arrays(tmp_path: Path, brightness_onnx: Path):
    detector = Detector.from_onnx(brightness_onnx, device="cpu")
    path = write_image(tmp_path / "g.png", grey(51))
    p = detector.predict([path, str(path), Image.fromarray(grey(102)), grey(255), grey(0)[..., 0]])
    np.testing.assert_allclose(p, [0.2, 0.2, 0.4, 1.0, 0.0], atol=1e-6)
    batch = np.stack([grey(0), grey(255), grey(51)])  # an NHWC array is a sequence of images
    np.testing.assert_allclose(detector.predict(batch, batch_size=2), [0.0, 1.0, 0.2], atol=1e-6)
    np.testing.assert_allclose(detector.predict(path), [0.2], atol=1e-6)  # one image
    assert detector.threshold == 0.5 and detector.provider == CPU
    assert detector.is_fake(0.5) and not detector.is_fake(0.49)


def test_preprocessing_follows_the_model_metadata(tmp_path: Path):
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[24:40, 24:40] = 255  # a white 16×16 centre on black
    crop = Detector.from_onnx(brightness_model(tmp_path / "c.onnx", brightness_meta(16)), "cpu")
    resize = Detector.from_onnx(
        brightness_model(tmp_path / "r.onnx", brightness_meta(16, mode="resize")), "cpu"
    )
    assert crop.predict([img])[0] == pytest.approx(1.0)  # the native centre crop
    assert resize.predict([img])[0] == pytest.approx(0.0625, abs=0.02)  # the whole image, shrunk


@pytest.mark.parametrize(
    "variant",
    [
        {"input_dtype": "float32"},  # float 0-1 input: the detector scales
        {"outputs": ("logits",)},  # no p_fake output: softmax of the logits
        {"batch": 4},  # a graph exported with a fixed batch: padded chunks
    ],
)
def test_graph_variants_give_the_same_scores(tmp_path: Path, variant: dict):
    detector = Detector.from_onnx(brightness_model(tmp_path / "m.onnx", **variant), "cpu")
    images = [grey(v) for v in (0, 51, 102, 153, 204, 255)]
    p = detector.predict(images, batch_size=3)
    if "outputs" in variant:  # softmax([1 - p, p]) is a monotone, known function of p
        expected = [1 / (1 + np.exp((1 - v / 255) - v / 255)) for v in (0, 51, 102, 153, 204, 255)]
        np.testing.assert_allclose(p, expected, atol=1e-6)
    else:
        np.testing.assert_allclose(p, [0, 0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-6)


def test_a_model_without_dfscan_metadata_is_refused(tmp_path: Path):
    path = brightness_model(tmp_path / "m.onnx", metadata=False)
    with pytest.raises(ModelError, match="without dfscan metadata"):
        Detector.from_onnx(path, "cpu")


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path: Path):
    path = brightness_model(tmp_path / "m.onnx", brightness_meta(16), input_size=32)
    with pytest.raises(ModelError, match="does not match"):
        Detector.from_onnx(path, "cpu")


@pytest.mark.parametrize("content", [b"", b"\x08\x01garbage that is not protobuf" * 3])
def test_a_corrupted_file_is_refused(tmp_path: Path, content: bytes):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Detector.from_onnx(path, "cpu")


def test_a_truncated_model_is_refused(tmp_path: Path, brightness_onnx: Path):
    data = brightness_onnx.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        Detector.from_onnx(path, "cpu")


def test_missing_model(tmp_path: Path):
    with pytest.raises(ModelError, match="not found"):
        Detector.from_onnx(tmp_path / "nope.onnx", "cpu")


def test_non_uint8_arrays_are_refused_with_a_hint(brightness_onnx: Path):
    detector = Detector.from_onnx(brightness_onnx, "cpu")
    with pytest.raises(DataError, match="uint8"):
        detector.predict([np.zeros((8, 8, 3), dtype=np.float32)])


def test_cuda_request_without_cuda_is_a_device_error(brightness_onnx: Path):
    if CUDA in available_providers():
        try:  # the provider may be there but unusable (no driver): that is the case to test
            detector = Detector.from_onnx(brightness_onnx, "cuda")
        except DeviceError:
            return
        pytest.skip(f"CUDA works here ({detector.provider})")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Detector.from_onnx(brightness_onnx, "cuda")

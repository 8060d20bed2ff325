"""Grad-CAM (Selvaraju et al., 2017) at the stages of a
:class:`~dfscan.train.models.detector.Detector`.

For a stage with activations A (N, C, h, w) and the logit y of the target class, the map is
``ReLU(Σ_c α_c · A_c)`` with ``α_c`` the spatial mean of ∂y/∂A_c; it is upsampled (bilinear) to
the model's input side and divided by its maximum, so values are in [0, 1] and 0 means "no
positive evidence for the class here".

Frozen stages (``requires_grad=False`` parameters) still pass gradients: the frontend's output
is made a leaf that requires grad, so every later activation is in the graph whatever was
trained. The model runs in eval mode (BatchNorm with its running statistics, no dropout), as it
does when scanning. For ``fft`` models the backbone's input is the centred spectrum, so the
maps are positions in frequency, not in the image.

A token backbone (a ViT) hands over token sequences: its patch tokens (prefix tokens such as
CLS left out) are laid back on their grid, one map cell per patch. Where the head reads only
the CLS token of the last stage (a ViT without ``+stats``), that stage's patch tokens do not
reach the output and its map is empty; the stages before it are the informative ones. A fused
backbone has one activation per branch at each stage and is refused: explain a branch alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from dfscan.scanner.errors import ModelError

from .detector import STAGES, Detector, StagedBackbone, layer_list

DEFAULT_LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
STRIDES = {"stem": "≤/4", "layer1": "/4", "layer2": "/8", "layer3": "/16", "layer4": "/32"}


def parse_layers(spec: str | Sequence[str] | None, model: Detector) -> tuple[str, ...]:
    """``layer1,layer3`` (or a sequence, or None for layer1-4) → stage names the model has."""
    if model.backbone.layout == "branches":
        raise ModelError(
            "Grad-CAM of a fused arch is not supported: each stage holds one activation per branch",
            hint="explain a checkpoint of one branch alone",
        )
    names = layer_list(spec, DEFAULT_LAYERS)
    if names == ["all"]:
        names = list(STAGES)
    available = tuple(model.backbone.stages)
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise ModelError(
            f"the model has no layer {missing[0]!r}" if missing else "no layers chosen",
            hint=f"choose from {', '.join(available)}",
        )
    return tuple(dict.fromkeys(names))  # de-duplicated, in the order given


@dataclass
class CamResult:
    """Maps per layer, (N, H, W) float32 in [0, 1]; the class probability; the logits."""

    maps: dict[str, Tensor]
    prob: Tensor  # (N,) softmax probability of the target class
    logits: Tensor  # (N, classes)


def grad_cam(model: Detector, x: Tensor, layers: Sequence[str], class_index: int = 1) -> CamResult:
    """Grad-CAM of ``class_index`` at each of ``layers`` for the batch ``x`` (NCHW)."""
    layers = parse_layers(list(layers), model)  # the model's stages; a fused one refused
    stages = model.backbone.stages
    was_training = model.training
    model.eval()
    activations: dict[str, Tensor] = {}

    def leaf(_module, _inputs, output: Tensor) -> Tensor:
        return output.detach().requires_grad_(True)

    def keep(name: str):
        def hook(_module, _inputs, output: Tensor) -> None:
            activations[name] = output

        return hook

    handles = [model.frontend.register_forward_hook(leaf)]
    handles += [stages[name].register_forward_hook(keep(name)) for name in layers]
    try:
        with torch.enable_grad():
            logits = model(x)
            score = logits[:, class_index].sum()  # images are independent: one backward pass
            grads = torch.autograd.grad(score, [activations[name] for name in layers])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    size = tuple(x.shape[-2:])
    maps = {}
    for name, grad in zip(layers, grads, strict=True):
        act, grad = (as_map(t, model.backbone) for t in (activations[name].detach(), grad))
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(dim=1).view(-1, 1, 1)
        maps[name] = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    logits = logits.detach()
    prob = torch.softmax(logits.float(), dim=1)[:, class_index]
    return CamResult({k: v.float().cpu() for k, v in maps.items()}, prob.cpu(), logits.cpu())


def as_map(x: Tensor, backbone: StagedBackbone) -> Tensor:
    """A stage's output as (N, C, h, w): feature maps as they are, patch tokens on their grid."""
    if backbone.layout == "nchw":
        return x
    tokens = x[:, backbone.prefix_tokens :]
    n, count, channels = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ModelError(f"{count} patch tokens do not form a square grid; cannot map them")
    return tokens.transpose(1, 2).reshape(n, channels, side, side)

"""Any timm model as a dfscan backbone: ``--arch timm:<name>``, ``timm:<name>+stats``.

The spec's mean, std and input size are timm's ``pretrained_cfg`` for the name; ``--weights
imagenet`` fetches timm's pretrained weights through timm (Hugging Face Hub, cached), ``--weights
PATH`` loads a state dict saved from the same timm model. CNNs are cut at their
``feature_info`` levels, ViTs into embedding + four block groups (:mod:`._staging`). A ViT
(its ``pretrained_cfg`` says ``fixed_input_size``) is built for the run's ``--size`` with
``img_size``; its position table is resampled by timm's own checkpoint filter, for timm's
weights and for a local file alike, so DINOv2 (pretrained at 518) probes at 224.

``+stats`` reads the frozen network at every stage (per-channel mean/std; for a ViT, over its
patch tokens, plus the pooled embedding) like ``efficientnet_lite0_stats``. Library backbones
default to the probe: frozen, a linear head (``head_fit lbfgs``); ``--train-layers`` fine-tunes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dfscan.scanner.errors import ModelError, first_line

from ._staging import Cut, NetPart, cut_feature_maps, cut_tokens, members
from .arch_table import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, rgb
from .detector import StagedBackbone
from .weights import load_into, read_state_dict

PREFIX = "timm:"
STATS_SUFFIX = "+stats"
PROBE_LAYERS = ("head",)  # library backbones default to the probe: frozen, a linear head
HEAD_MODULES = ("global_pool", "head", "fc", "classifier")  # where a timm CNN's pooling starts
TOKEN_POOL = ("attn_pool", "fc_norm", "head_drop", "head")  # what a timm ViT pools with
CHECK_SIZE = 64  # the side of the one image a CNN's cut is checked on


def split_stats(rest: str) -> tuple[str, bool]:
    """``name+stats`` → (name, True); ``name`` → (name, False)."""
    if rest.endswith(STATS_SUFFIX):
        return rest[: -len(STATS_SUFFIX)], True
    return rest, False


def arch_spec(rest: str) -> ArchSpec:
    """The spec of ``timm:<rest>``; nothing is built or downloaded until ``build``."""
    import timm

    name, stats = split_stats(rest)
    if not timm.is_model(name):
        raise ModelError(
            f"timm has no model {name!r}",
            hint="list them with python -c \"import timm; print(timm.list_models('vit_*'))\"",
        )
    cfg = timm.get_pretrained_cfg(name)
    mean, std = IMAGENET_MEAN, IMAGENET_STD  # timm's own default, for a model without a cfg
    if cfg and len(cfg.mean) == len(cfg.std) == 3:
        mean, std = cfg.mean, cfg.std
    label = "statistics of every stage" if stats else "pooled embedding"
    native = cfg.input_size[-1] if cfg else None

    def build_at(weights: str | None, side: int) -> StagedBackbone:
        return build(name, weights, stats, None if side == native else side)

    return ArchSpec(
        f"{PREFIX}{rest}",
        lambda weights: build(name, weights, stats),
        mean=rgb(mean),
        std=rgb(std),
        default_train_layers=PROBE_LAYERS,
        head_hidden=0,
        description=f"timm {name}, {label}",
        short=f"timm-{rest}",
        input_size=native,
        build_at=build_at if cfg and cfg.fixed_input_size else None,
    )


def create(name: str, weights: str | None, side: int | None = None) -> nn.Module:
    """timm's network without its classifier, in eval mode, with ``weights``; built for
    ``side``-pixel inputs when given (a ViT's ``img_size``)."""
    import timm

    sized: dict[str, Any] = {"img_size": side} if side else {}
    if weights == "imagenet":
        try:
            with quiet_hub_retries():
                net = timm.create_model(name, pretrained=True, num_classes=0, **sized)
        except Exception as exc:  # hub, HTTP and file errors of many types
            raise ModelError(
                f"could not fetch timm's pretrained weights for {name}: {first_line(exc)}",
                hint="offline: pass --weights PATH (a state dict of this timm model), or run "
                "once online so timm caches them (HF_HOME); HF_HUB_OFFLINE=1 fails fast",
            ) from exc
    else:
        net = timm.create_model(name, pretrained=False, num_classes=0, **sized)
        if weights:
            load_into(net, as_timm_loads(read_state_dict(Path(weights)), net), weights, ())
    return net.eval()


def as_timm_loads(state: dict[str, Any], net: nn.Module) -> dict[str, Any]:
    """``state`` through the checkpoint filter of ``net``'s timm module, as timm filters its own
    pretrained weights: it resamples a ViT's position table to the grid ``net`` was built for
    (and reads the original DINOv2 / OpenAI CLIP layouts); a no-op for a timm state dict at
    ``net``'s own side."""
    import importlib

    module = importlib.import_module(type(net).__module__)
    fit = getattr(module, "checkpoint_filter_fn", None)
    return dict(fit(state, net)) if fit is not None else state


@contextmanager
def quiet_hub_retries() -> Iterator[None]:
    """Offline, the Hub client logs a warning per retry (ten of them) before it gives up: the
    user gets our one line instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def build(name: str, weights: str | None, stats: bool, side: int | None = None) -> StagedBackbone:
    net = create(name, weights, side)
    return cut(net, f"{PREFIX}{name}").backbone(stats)


def cut(net: nn.Module, what: str) -> Cut:
    """A timm network cut into stages: a ViT (patch embedding + blocks) or a CNN."""
    try:
        if hasattr(net, "patch_embed") and hasattr(net, "blocks"):
            return _cut_vit(net, what)
        levels = [(info["module"], info["reduction"]) for info in getattr(net, "feature_info", [])]
        return cut_feature_maps(
            net, levels, _features, _pooled, HEAD_MODULES, _check_size(net), what
        )
    except (AttributeError, RuntimeError, TypeError, ValueError) as exc:  # its forward is not ours
        raise ModelError(f"{what} cannot be cut into stages: {first_line(exc)}") from exc


def _features(net: Any, x: Tensor) -> Tensor:
    return net.forward_features(x)


def _pooled(net: Any, x: Tensor) -> Tensor:
    return net.forward_head(x, pre_logits=True)


def _vit_embed(net: Any, x: Tensor) -> Tensor:
    return net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))


def _check_size(net: nn.Module) -> int:
    cfg: dict[str, Any] = getattr(net, "pretrained_cfg", {}) or {}
    fixed = cfg.get("fixed_input_size") and cfg.get("input_size")
    return int(fixed[-1]) if fixed else CHECK_SIZE


def _cut_vit(net: Any, what: str) -> Cut:
    pool_owns = [m for m in TOKEN_POOL if getattr(net, m, None) is not None]
    embed_owns = [m for m in members(net) if m not in {"blocks", "norm", *pool_owns}]
    image_size = getattr(net.patch_embed, "img_size", None)
    size = int(image_size[0]) if image_size else _check_size(net)
    return cut_tokens(
        net,
        NetPart(net, embed_owns, _vit_embed),
        list(net.blocks),
        net.norm,
        NetPart(net, pool_owns, _pooled),
        lambda x: net.forward_head(net.forward_features(x), pre_logits=True),
        size,
        int(getattr(net, "num_prefix_tokens", 1)),
        what,
    )

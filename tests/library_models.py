"""Tiny library backbones for tests: timm's own test models and a two-block open_clip tower.

timm registers ``test_*`` models (a few hundred thousand parameters) with real
``pretrained_cfg``s; open_clip has none, so :func:`tiny_clip` adds a model config the way users
add theirs (``open_clip.add_model_config``). Nothing here downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

TIMM_CNN = "timm:test_efficientnet"
TIMM_VIT = "timm:test_vit"
TINY_CLIP_MODEL = "dfscan-test-clip"
TINY_CLIP = f"open_clip:{TINY_CLIP_MODEL}"
TINY_CLIP_SIZE = 32
_TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": TINY_CLIP_SIZE,
        "layers": 3,
        "width": 32,
        "head_width": 16,
        "patch_size": 8,
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def tiny_clip(directory: Path) -> str:
    """Register the tiny open_clip model (idempotent); its ``--arch`` name."""
    import open_clip

    if TINY_CLIP_MODEL not in open_clip.list_models():
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{TINY_CLIP_MODEL}.json"
        path.write_text(json.dumps(_TINY_CLIP_CONFIG), encoding="utf-8")
        open_clip.add_model_config(path)
    return TINY_CLIP

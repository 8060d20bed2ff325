"""The identity of a dfscan checkpoint, kept apart so light modules can test for one."""

from __future__ import annotations

from typing import Any

CHECKPOINT_FORMAT = "dfscan-checkpoint"
CHECKPOINT_VERSION = 1


def is_dfscan_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT

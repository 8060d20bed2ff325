"""Scanning folders: discovery, the local and Ray engines, CSV/JSONL/HTML reports, resume and
threshold calibration on real photos."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .calibrate import calibrate
    from .discovery import discover
    from .options import ScanOptions
    from .run import ScanResult, run_scan

__all__ = [
    "ScanOptions",
    "ScanResult",
    "calibrate",
    "discover",
    "run_scan",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "ScanOptions": ".options",
        "ScanResult": ".run",
        "calibrate": ".calibrate",
        "discover": ".discovery",
        "run_scan": ".run",
    },
)

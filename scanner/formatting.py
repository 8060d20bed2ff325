"""How numbers read in tables and messages, in one place so every command writes them alike.

Torch-free and dependency-free: the scanner, the training side and the export side all use it.
A missing value (``None`` or NaN: an AUC on one class, a run not done yet) reads as ``missing``,
an en dash in tables by default; sentences pass ``missing=NA``.
"""

from __future__ import annotations

import math

DASH = "–"  # missing, in tables
NA = "n/a"  # missing, in sentences


def is_missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x: float | None, missing: str = DASH) -> str:
    """A metric in [0, 1] (or any score) to three decimals."""
    return missing if is_missing(x) else f"{x:.3f}"


def pct(x: float | None, missing: str = DASH) -> str:
    """A fraction as a percentage with one decimal."""
    return missing if x is None or is_missing(x) else f"{100 * x:.1f}%"


def duration(seconds: float | None, missing: str = DASH) -> str:
    """``42s`` or ``3m07s``: training times in a results table."""
    if seconds is None:
        return missing
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def shorten(text: str, limit: int = 90) -> str:
    """One line of at most ``limit`` characters (an error message in a table cell)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

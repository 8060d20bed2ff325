"""The shared number formats: the strings every table and message has always shown."""

from __future__ import annotations

import math

from dfscan.scanner.formatting import NA, duration, num, pct, shorten


def test_num_and_pct_read_as_before() -> None:
    assert num(0.12345) == "0.123"
    assert pct(0.1234) == "12.3%"
    assert num(None) == pct(None) == "–"
    assert num(None, NA) == "n/a"


def test_nan_is_missing_like_none() -> None:
    assert num(math.nan) == "–"
    assert pct(math.nan, NA) == "n/a"


def test_duration_and_shorten() -> None:
    assert duration(None) == "–"
    assert duration(42.4) == "42s"
    assert duration(187) == "3m07s"
    assert shorten("a  b\nc") == "a b c"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"

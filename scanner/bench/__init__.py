"""``dfscan bench``: the throughput and latency of each stage (decode, preprocess, model, serve) on
this machine, measured interleaved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .run import run_bench
    from .settings import BenchSettings

__all__ = [
    "BenchSettings",
    "run_bench",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "BenchSettings": ".settings",
        "run_bench": ".run",
    },
)

"""What a benchmark run is given: its settings, and what a plug-in stage receives.

Apart from :mod:`.bench` so the stages (:mod:`.bench_stages`, plug-ins) can name these types
without importing the orchestration that imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..model.detector import Detector
from ..model.runtime import Device

Note = Callable[[str], None]


@dataclass
class BenchSettings:
    model: Path
    folder: Path | None = None  # None: synthetic 1024² JPEGs and PNGs
    device: Device = "auto"
    batch_sizes: Sequence[int] = (1, 8, 16, 32)
    scan_batch_size: int = 16
    images: int = 64  # per format, when synthetic
    image_size: int = 1024
    min_seconds: float = 3.0  # per model-only measurement
    memory_files: Sequence[int] = ()  # e.g. (1000, 20000): scan memory vs folder size
    checkpoint: Path | None = None
    workers: int | None = None
    smoke: bool = False
    engine: str = "local"  # "ray": also the Ray engine with 1 and 2 workers on the same folder
    rounds: int = 7  # interleaved rounds behind every ratio
    turn_seconds: float = 1.0  # an arm's turn in a round lasts at least about this long

    @classmethod
    def for_smoke(cls, **kwargs: Any) -> BenchSettings:
        """Seconds, not minutes: tiny images, two batch sizes, one timing each (for CI)."""
        base: dict[str, Any] = dict(
            batch_sizes=(1, 2),
            scan_batch_size=2,
            images=4,
            image_size=128,
            min_seconds=0.0,
            memory_files=(20, 40),
            smoke=True,
            rounds=3,
            turn_seconds=0.0,
        )
        return cls(**(base | kwargs))


@dataclass
class BenchContext:
    """What a plug-in stage gets: the settings, the report so far and the shared inputs."""

    settings: BenchSettings
    report: dict[str, Any]
    detector: Detector  # the --model session, warm
    groups: dict[str, list[Path]]  # benchmark files per format
    crops: np.ndarray  # prepared model inputs (NHWC uint8) from those files
    tmp: Path  # removed when the benchmark ends
    note: Note

    @property
    def jpeg_paths(self) -> list[Path]:
        return self.groups.get("jpeg") or next(iter(self.groups.values()))


class BenchStage(Protocol):
    """A ``dfscan.bench`` entry point: cheap to load (heavy imports inside ``run``)."""

    def wanted(self, settings: BenchSettings) -> bool: ...

    def run(self, context: BenchContext) -> dict[str, Any]: ...

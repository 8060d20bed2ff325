"""What a benchmark run is given: its settings, and what a plug-in stage receives.

Apart from :mod:`.bench` so the stages (:mod:`.bench_stages`, plug-ins) can name these types
without importing the orchestration that imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..fields import option

if TYPE_CHECKING:
    import numpy as np

    from ..model.detector import Detector
    from ..model.runtime import Device

Note = Callable[[str], None]


def _comma_list(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


@dataclass
class BenchSettings:
    """What ``dfscan bench`` measures; its options are these fields (defaults and help here)."""

    model: Path
    folder: Path | None = None  # None: synthetic 1024² JPEGs and PNGs
    device: Device = option("auto", help="auto, cpu or cuda.")  # noqa: RUF009 (a field)
    batch_sizes: Sequence[int] = option(
        (1, 8, 16, 32), help="Model-only batch sizes.", cli_value=_comma_list
    )
    scan_batch_size: int = 16
    images: int = option(64, min=1, help="Synthetic images per format.")  # when synthetic
    image_size: int = 1024
    min_seconds: float = option(3.0, min=0.0, help="Minimum timing per model-only measurement.")
    memory_files: Sequence[int] = option(  # e.g. (1000, 20000): scan memory vs folder size
        (),
        help="Scan memory for folders of these many small files (e.g. 1000,20000).",
        cli_value=_comma_list,
    )
    checkpoint: Path | None = option(  # noqa: RUF009 (option() is a dataclass field)
        None,
        help="Also measure PyTorch eager/TorchScript, the seed's pipeline, int8 and the "
        "other input variant (needs dfscan[export]).",
    )
    workers: int | None = None
    smoke: bool = option(
        False, flags=("--smoke",), help="Tiny sizes: checks that every stage runs (CI)."
    )
    engine: str = option(  # "ray": also the Ray engine with 1 and 2 workers on the same folder
        "local",
        help="'ray': also scan with the Ray engine, 1 and 2 workers (needs [ray]).",
    )
    rounds: int = option(  # interleaved rounds behind every ratio
        7, min=1, help="Interleaved rounds behind every ratio (A B, B A, …)."
    )
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

"""What a scan is given: :class:`ScanOptions` and the Ray engine's :class:`RayOptions`.

Each default and its help text are written once, here: ``dfscan scan`` builds its options from
these fields (:mod:`dfscan.scanner.cli.options`). Apart from :mod:`.run` and :mod:`.engine_ray`,
and importing nothing heavy, so ``dfscan --help`` reads the defaults without loading numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..fields import option

if TYPE_CHECKING:
    from ..model.runtime import Device
    from .resume import Existing

Engine = Literal["auto", "local", "ray"]


@dataclass
class RayOptions:
    address: str | None = option(  # None: start a local Ray on this machine; "auto"; ray://…
        None, help="--engine ray: 'auto' or ray://HOST:PORT (default: start a local Ray)."
    )
    workers: int | None = None  # actors, each with one ORT session; None: the CPUs / per worker
    cpus_per_worker: float = option(
        1.0, min=0.1, help="--engine ray: CPUs per actor (its ORT threads)."
    )
    gpus_per_worker: float = option(
        0.0, min=0.0, help="--engine ray: GPUs per actor (> 0: CUDA provider)."
    )
    batch_size: int = 32  # set from ScanOptions.batch_size by the scan
    provenance: bool = True  # set from ScanOptions.provenance by the scan


@dataclass
class ScanOptions:
    folders: Sequence[Path | str]  # local folders/files, or fsspec URIs (s3://…) with ray
    model: Path | str | None  # None: the built-in detector; str paths become Paths
    csv: Path | str | None = option(  # noqa: RUF009 (option() is a dataclass field)
        None, flags=("--csv",), help="Write one row per file to this CSV (flushed)."
    )
    jsonl: Path | str | None = option(  # noqa: RUF009 (option() is a dataclass field)
        None, flags=("--jsonl",), help="Write one JSON object per file to this file."
    )
    threshold: float | None = option(  # None: the model's calibrated threshold
        None,
        min=0.0,
        max=1.0,
        help="Flag as fake when p_fake ≥ this. Default: the model's calibrated one.",
    )
    device: Device | str = option(  # noqa: RUF009 (auto, cpu, cuda, cuda:N: runtime.parse_device)
        "auto", help="auto: CUDA when it works, else CPU (with a warning)."
    )
    batch_size: int = option(32, min=1, help="Images per inference batch.")
    workers: int | None = option(  # decoding threads; None: one per core; 0: decode inline
        None,
        min=0,
        help="Decoding threads (0: decode inline; default one per core); with --engine ray "
        "the number of actors (default: the cluster's CPUs / --cpus-per-worker).",
    )
    existing: Existing = "refuse"  # what to do with report files that already exist
    retry_errors: bool = option(  # with resume: scan again the files whose rows have an error
        False,
        flags=("--retry-errors",),
        help="With --resume: scan again the files whose rows have an error.",
    )
    provenance: bool = True  # read what files declare about their origin (C2PA, XMP, PNG, EXIF)
    html: Path | str | None = option(  # noqa: RUF009 (a self-contained HTML page at the end)
        None,
        flags=("--html",),
        help="Write a self-contained HTML page of the scan here at the end.",
    )
    engine: Engine = option(  # noqa: RUF009 (auto: local, or ray when a source is a URI)
        "auto", help="local threads, or Ray Data actors; auto: ray for URI sources."
    )
    ray: RayOptions | None = None  # --engine ray settings (workers, address, resources)

    def __post_init__(self) -> None:
        self.model = None if self.model is None else Path(self.model)
        for name in ("csv", "jsonl", "html"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))


@dataclass(frozen=True)
class CalibrateSettings:
    """``dfscan calibrate``'s tunables; :func:`dfscan.scanner.scan.calibrate.calibrate` takes
    its defaults from here too."""

    target_fpr: float = option(
        0.05, help="Share of your real photos the new threshold may flag, in (0, 0.5]."
    )
    batch_size: int = option(32, min=1, help="Images per inference batch.")


CALIBRATE = CalibrateSettings()

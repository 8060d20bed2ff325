"""What the HTTP app serves, without the web framework: the model, the limits, the key, and
:meth:`Service.scan` (uploaded bytes → one scan row per image).

Decoding, the NaN rule and the rows are the scan's own core (:mod:`dfscan.scanner.scan.core`:
:func:`~dfscan.scanner.scan.core.decode` on the bytes, as the Ray actors call it: the same pixels
and the same messages, naming the upload), provenance is the scan's reader on the same bytes,
and each answer is a :class:`~dfscan.scanner.scan.reports.Row`: the fields of a scan row, with
the upload's ``name`` for its path.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..labels import FAKE
from ..model.detector import Detector
from ..scan.core import Decoded, decode, naming_the_file, outcome, provenance_cells
from ..scan.discovery import Found
from ..scan.pipeline import default_workers
from ..scan.reports import Row
from .batcher import Batcher
from .limits import Limits, check_pixels
from .metrics import Metrics
from .settings import SERVE


@dataclass(frozen=True)
class Upload:
    """One image of a request: its name (file name, or ``image`` for a raw body) and bytes."""

    name: str
    data: bytes


def _record(row: Row) -> dict[str, Any]:
    """A scan row as JSON: the upload's ``name`` instead of ``path`` and no ``generator``
    (an upload has no folder to name one)."""
    record = row.to_record()
    record.pop("generator")
    return {"name": record.pop("path"), **record}


@dataclass
class Service:
    """The model and settings behind the app; ``start``/``stop`` own the threads."""

    detector: Detector
    model_path: Path
    model_sha256: str
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    max_batch: int = SERVE.max_batch
    max_wait_ms: float = SERVE.max_wait_ms
    workers: int | None = None  # decoding threads; None: one per core
    provenance: bool = True
    card: dict[str, Any] | None = None  # the model card, when the model has one
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.batcher = Batcher(
            self.detector, self.max_batch, self.max_wait_ms, self.limits.max_queued_images,
            self.metrics,
        )  # fmt: skip
        self.pool: ThreadPoolExecutor | None = None
        self.in_flight = 0  # /v1/scan requests being handled

    @property
    def threshold(self) -> float:
        return self.detector.threshold

    @property
    def ready(self) -> bool:
        return self.batcher.running and self.batcher.open < self.limits.max_queued_images

    def start(self) -> None:
        workers = default_workers() if self.workers is None else max(1, self.workers)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="dfscan-serve-decode")
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def decode(self, upload: Upload) -> Decoded:
        """Header check, decode and crop, provenance: one upload, on a decoding thread.

        The scan's core decides what is the image's fault (a DataError: an error result). Where
        a scan stops on anything else, a server answers every upload: an exception the core
        lets through on hostile bytes is this upload's error result, never a failed request.
        """
        found = Found(upload.name, "")
        try:
            check_pixels(upload.data, self.limits.max_pixels)
            decoded = decode(found, self.detector.meta.preprocess, upload.data)
        except DataError as exc:
            decoded = Decoded(found, error=exc.message)
        except Exception as exc:
            message = f"not a readable image: {type(exc).__name__}: {exc}"
            decoded = Decoded(found, error=naming_the_file(message, upload.name))
        if not self.provenance:
            return decoded
        label, detail = provenance_cells(upload.data)
        return replace(decoded, provenance=label, provenance_detail=detail)

    async def _one(self, upload: Upload, threshold: float) -> dict[str, Any]:
        submitted = False
        try:
            loop = asyncio.get_running_loop()
            d = await loop.run_in_executor(self.pool, self.decode, upload)
            p: float | None = None
            if d.pixels is not None:
                submitted = True
                p = await self.batcher.score(d.pixels)
        finally:
            if not submitted:
                self.batcher.skip(1)
            self.batcher.release(1)
        row = Row.from_scored(outcome(d, p), threshold, self.model_sha256)
        self.metrics.images.inc(1, "error" if row.p_fake is None else "scored")
        if row.verdict == FAKE:
            self.metrics.flagged.inc()
        return _record(row)

    async def scan(self, uploads: list[Upload], threshold: float | None = None) -> list[dict]:
        """One result per upload, in order. The caller has ``batcher.reserve``d them."""
        t = self.threshold if threshold is None else threshold
        return list(await asyncio.gather(*(self._one(u, t) for u in uploads)))

    def model_info(self) -> dict[str, Any]:
        """``GET /v1/model``: the model's identity, spec and what made it."""
        meta = self.detector.meta
        return {
            "name": self.model_path.name,
            "sha256": self.model_sha256,
            "arch": meta.arch,
            "precision": meta.precision,
            "threshold": meta.threshold,
            "threshold_rule": meta.threshold_rule,
            "provider": self.detector.provider,
            "input_size": meta.size,
            "classes": list(meta.classes),
            "spec": meta.spec.to_dict(),
            "spec_sha256": meta.spec.sha256,
            "training": meta.training,
            "metrics": meta.metrics,
            "versions": meta.versions,
            "export": meta.export,
            "card": self.card,
            "max_batch": self.batcher.max_batch,
            "limits": {
                "max_body_bytes": self.limits.max_body_bytes,
                "max_files": self.limits.max_files,
                "max_pixels": self.limits.max_pixels,
            },
        }

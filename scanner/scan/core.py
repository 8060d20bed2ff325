"""The decode-and-score core of every scan: a file → its model input or its own error, a batch
→ scores, each file → one :class:`Scored` outcome.

The local engine runs these functions on its threads (:mod:`.pipeline`), the Ray engine inside
its actors (:mod:`.engine_ray`), the HTTP service per upload (:mod:`dfscan.scanner.serve`), so
all of them see the same pixels, write the same errors and stop on the same bugs.

The error policy lives here, once: only :class:`~dfscan.scanner.errors.DataError` is a file's
own fault (unreadable, truncated, not an image: the preprocessing turns what Pillow raises on
broken files into one) and becomes an error outcome. Anything else (a TypeError in preparing
the crop, a failing model) is a bug in dfscan and propagates: it stops the scan instead of
hiding in thousands of error rows.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ..errors import DataError
from ..model.detector import Detector
from ..model.preprocess import PreprocessConfig, decode_prepared
from ..provenance.read import read_provenance
from .discovery import Found
from .sources import read_bytes

NO_SCORE = "the model returned no valid score (NaN)"
ProvenanceCells = tuple[str | None, str | None]  # the ``provenance`` and ``…_detail`` cells

# How Pillow names an in-memory file in its messages (where it names a path as repr(path))
_BUFFER = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True, slots=True)
class Decoded:
    """One file after decoding: the model input, or why there is none."""

    found: Found
    pixels: np.ndarray | None = None  # (S, S, 3) uint8
    width: int | None = None
    height: int | None = None
    format: str | None = None
    animated: bool = False
    error: str | None = None
    provenance: str | None = None
    provenance_detail: str | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    """One file's outcome: p_fake or an error (never both), and what the file declares.

    A report row is this plus what the scan decides (verdict at its threshold, the model's
    hash): :meth:`~dfscan.scanner.scan.reports.Row.from_scored` takes the shared fields by
    name. The Ray actors send it back as :meth:`to_record`, so its fields are declared here only.
    """

    path: str
    generator: str
    p_fake: float | None
    width: int | None
    height: int | None
    format: str | None
    animated: bool
    error: str | None
    provenance: str | None = None
    provenance_detail: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The fields by name: JSON-ready, exact (p_fake is not rounded)."""
        return {name: getattr(self, name) for name in SCORED_FIELDS}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Scored:
        """The inverse of :meth:`to_record` (TypeError when a field is missing or unknown)."""
        return cls(**record)


SCORED_FIELDS = tuple(f.name for f in fields(Scored))


def naming_the_file(message: str, path: str) -> str:
    """A message about a file's bytes in memory, naming the file where Pillow names its buffer
    (as Pillow names a path: ``repr``), so it reads as it would for the path."""
    return _BUFFER.sub(repr(path), message)


def read_file(path: str) -> bytes:
    """The bytes of a local path or a URI; a file that cannot be read is the file's fault."""
    try:
        return read_bytes(path)
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}") from exc


def provenance_cells(source: str | bytes) -> ProvenanceCells:
    """The provenance cells of a file (a path) or of its bytes; never raises for bad metadata."""
    prov = read_provenance(io.BytesIO(source) if isinstance(source, bytes) else source)
    return prov.label, prov.detail_json()


def decode(found: Found, cfg: PreprocessConfig, data: bytes | None = None) -> Decoded:
    """Decode and prepare one file (or ``data``, its bytes already read); a file that is not a
    usable image becomes ``error``, anything else raises.

    In crop mode only the region the crop reads is decoded where that is possible
    (:func:`decode_prepared`: the same pixels). Messages about ``data`` name the file as they
    would for its path, not the in-memory buffer.
    """
    if found.problem is not None:
        return Decoded(found, error=found.problem)
    try:
        pixels, info = decode_prepared(found.path if data is None else data, cfg)
    except DataError as exc:
        message = exc.message if data is None else naming_the_file(exc.message, found.path)
        return Decoded(found, error=message)
    return Decoded(found, pixels, info.width, info.height, info.format, info.animated)


def read_and_decode(found: Found, cfg: PreprocessConfig, provenance: bool) -> Decoded:
    """Read the file once (a path or a URI), its provenance from those bytes, then decode them:
    what a Ray actor does for each file, where nothing but the path travels to it."""
    if found.problem is not None:
        return Decoded(found, error=found.problem)
    try:
        data = read_file(found.path)
    except DataError as exc:
        return Decoded(found, error=exc.message)
    decoded = decode(found, cfg, data)
    if not provenance:
        return decoded
    label, detail = provenance_cells(data)
    return replace(decoded, provenance=label, provenance_detail=detail)


def outcome(decoded: Decoded, p_fake: float | None) -> Scored:
    """One file's outcome from its decoding and its score (None when it was not scored); a
    score that is not a number is an error, never a verdict."""
    error = decoded.error
    if p_fake is not None and not np.isfinite(p_fake):
        p_fake, error = None, NO_SCORE
    f = decoded.found
    return Scored(
        f.path,
        f.generator,
        None if p_fake is None else float(p_fake),
        decoded.width,
        decoded.height,
        decoded.format,
        decoded.animated,
        error,
        decoded.provenance,
        decoded.provenance_detail,
    )


def score_batch(batch: Sequence[Decoded], detector: Detector) -> list[Scored]:
    """Score the decoded files of ``batch`` in one model run; one outcome per file, in order."""
    images = [d.pixels for d in batch if d.pixels is not None]
    scores = iter(detector.run(images) if images else ())
    return [outcome(d, None if d.pixels is None else float(next(scores))) for d in batch]

"""Decoding on a thread pool, overlapped with batched inference, in bounded memory.

Pillow decodes and resizes with the GIL released, and so does ONNX Runtime while it runs, so
threads (not processes) overlap the two without copying pixels between processes. A window of
at most ``prefetch`` files is in flight: while the model scores one batch, the pool decodes the
next ones, and discovery is only asked for more when a slot frees. Memory is bounded by that
window (prepared crops, not full images), whatever the number of files.

Results come out in discovery order, one per file: a score, or the reason it has none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..model.detector import Detector
from ..model.preprocess import PreprocessConfig, decode_prepared
from ..model.runtime import available_cores
from .discovery import Found


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


@dataclass(frozen=True, slots=True)
class Scored:
    """One file's outcome: p_fake, or an error; never both."""

    path: str
    generator: str
    p_fake: float | None
    width: int | None
    height: int | None
    format: str | None
    animated: bool
    error: str | None


def decode(found: Found, cfg: PreprocessConfig) -> Decoded:
    """Decode and prepare one file; a file that is not a usable image becomes ``error``.

    In crop mode only the region the crop reads is decoded where that is possible
    (:func:`decode_prepared`: the same pixels). Only :class:`DataError` is the image's own
    fault: :func:`decode_rgb` turns what Pillow's decoders raise on broken, truncated or
    unsupported files into one. Anything else (a TypeError in preparing the crop, say) is a bug
    in dfscan and stops the scan instead of hiding in thousands of error rows.
    """
    if found.problem is not None:
        return Decoded(found, error=found.problem)
    try:
        pixels, info = decode_prepared(found.path, cfg)
    except DataError as exc:
        return Decoded(found, error=exc.message)
    return Decoded(found, pixels, info.width, info.height, info.format, info.animated)


def default_workers() -> int:
    """Decoding threads: one per core (decoding and ORT both release the GIL)."""
    return available_cores()


def decode_ahead(
    files: Iterable[Found], cfg: PreprocessConfig, workers: int, prefetch: int
) -> Iterator[Decoded]:
    """``decode`` over ``files`` on ``workers`` threads, in order, at most ``prefetch`` ahead."""
    if workers <= 0:
        yield from (decode(found, cfg) for found in files)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dfscan-decode")
    window: deque[Future[Decoded]] = deque()
    try:
        for found in files:
            window.append(pool.submit(decode, found, cfg))
            if len(window) >= prefetch:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:  # also on an interrupted scan: drop what was queued, wait for what runs
        pool.shutdown(wait=True, cancel_futures=True)


def _finish(pending: list[Decoded], detector: Detector) -> list[Scored]:
    images = [d.pixels for d in pending if d.pixels is not None]
    scores = iter(detector.run(images) if images else ())
    out = []
    for d in pending:
        p, error = None, d.error
        if d.pixels is not None:
            p = float(next(scores))
            if not np.isfinite(p):
                p, error = None, "the model returned no valid score (NaN)"
        f = d.found
        out.append(Scored(f.path, f.generator, p, d.width, d.height, d.format, d.animated, error))
    return out


def score(
    files: Iterable[Found],
    detector: Detector,
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[Scored]:
    """Score every file, in order, in batches of ``batch_size`` decoded images.

    Files that failed to decode wait for the batch around them (so the order holds) but never
    more than a few batches' worth, so a folder of broken files still streams.
    """
    workers = default_workers() if workers is None else workers
    batch_size = detector.batch_size_hint or batch_size
    prefetch = 2 * batch_size + max(workers, 1)
    pending: list[Decoded] = []
    n_images = 0
    for decoded in decode_ahead(files, detector.meta.preprocess, workers, prefetch):
        pending.append(decoded)
        n_images += decoded.pixels is not None
        if n_images >= batch_size or len(pending) >= 4 * batch_size:
            yield from _finish(pending, detector)
            pending, n_images = [], 0
    if pending:
        yield from _finish(pending, detector)

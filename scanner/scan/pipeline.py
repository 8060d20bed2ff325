"""Decoding on a thread pool, overlapped with batched inference, in bounded memory.

Pillow decodes and resizes with the GIL released, and so does ONNX Runtime while it runs, so
threads (not processes) overlap the two without copying pixels between processes. A window of
at most ``prefetch`` files is in flight: while the model scores one batch, the pool decodes the
next ones, and discovery is only asked for more when a slot frees. Memory is bounded by that
window (prepared crops, not full images), whatever the number of files.

Results come out in discovery order, one per file: a score, or the reason it has none. What
happens to one file and one batch (and which errors stop the scan) is :mod:`.core`'s, the same
functions the Ray actors run; this module only schedules them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ..model.detector import Detector
from ..model.preprocess import PreprocessConfig
from ..model.runtime import available_cores
from .core import Decoded, Scored, decode, score_batch
from .discovery import Found


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
            yield from score_batch(pending, detector)
            pending, n_images = [], 0
    if pending:
        yield from score_batch(pending, detector)

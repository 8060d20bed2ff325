"""The local engine's stream of outcomes: scores from the decoding pool and batched ORT, and
the provenance cells read beside them on a small thread pool of their own, in the same order
(they fill two columns and never touch a score)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import cast

from ..model.detector import Detector
from .core import ProvenanceCells, Scored, provenance_cells
from .discovery import Found
from .pipeline import default_workers, score


def _file_provenance(found: Found) -> ProvenanceCells:
    """The provenance cells of one found file (none for a file known to be unreadable)."""
    return (None, None) if found.problem is not None else provenance_cells(found.path)


class _ProvenanceAhead:
    """Reads provenance for the files the pipeline pulls, on ``workers`` threads (0: inline at
    ``take``), and hands the results back in the same order. The window is as long as the
    pipeline's own, so memory stays bounded."""

    def __init__(self, workers: int) -> None:
        self.pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="dfscan-provenance") if workers else None
        )
        self.window: deque[Future[ProvenanceCells] | Found] = deque()

    def feed(self, files: Iterable[Found]) -> Iterator[Found]:
        for found in files:
            if self.pool is not None:
                self.window.append(self.pool.submit(_file_provenance, found))
            else:
                self.window.append(found)
            yield found

    def take(self) -> ProvenanceCells:
        item = self.window.popleft()
        return item.result() if isinstance(item, Future) else _file_provenance(item)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


Stream = Iterator[Scored]


def local_stream(
    todo: Iterable[Found],
    detector: Detector,
    batch_size: int,
    workers: int | None,
    provenance: bool,
) -> tuple[Stream, Callable[[], None]]:
    """The local engine: the decoding pool and batched ORT, provenance on its own threads."""
    ahead = None
    if provenance:
        ahead = _ProvenanceAhead(min(default_workers() if workers is None else workers, 2))
        todo = ahead.feed(todo)
    # score() is a generator function: what it returns can be closed
    scored_files = cast(Generator[Scored, None, None], score(todo, detector, batch_size, workers))

    def stream() -> Stream:
        for scored in scored_files:
            if ahead is None:
                yield scored
            else:
                label, detail = ahead.take()
                yield replace(scored, provenance=label, provenance_detail=detail)

    def close() -> None:
        scored_files.close()
        if ahead is not None:
            ahead.close()

    return stream(), close

"""The local engine's stream of results: scores from the decoding pool and batched ORT, and
beside them the provenance cells, read on a small thread pool of their own in the same order
(they fill two columns and never touch a score)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from ..model.detector import Detector
from ..provenance.read import read_provenance
from .discovery import Found
from .pipeline import Scored, default_workers, score

ProvenanceCells = tuple[str | None, str | None]


def provenance_cells(found: Found) -> ProvenanceCells:
    """The ``provenance`` and ``provenance_detail`` cells of one file."""
    if found.problem is not None:
        return None, None
    prov = read_provenance(found.path)
    return prov.label, prov.detail_json()


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
                self.window.append(self.pool.submit(provenance_cells, found))
            else:
                self.window.append(found)
            yield found

    def take(self) -> ProvenanceCells:
        item = self.window.popleft()
        return item.result() if isinstance(item, Future) else provenance_cells(item)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


Stream = Iterator[tuple[Scored, ProvenanceCells]]


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
            yield scored, ahead.take() if ahead is not None else (None, None)

    def close() -> None:
        scored_files.close()
        if ahead is not None:
            ahead.close()

    return stream(), close

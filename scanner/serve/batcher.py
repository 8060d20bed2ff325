"""Concurrent requests' images coalesced into ONNX Runtime batches.

Requests decode their images on a thread pool and hand the prepared crops to one
:class:`Batcher`, which runs on the event loop. It takes the first waiting crop, then keeps
collecting until the batch holds ``max_batch`` crops or ``max_wait_ms`` have passed since that
first crop arrived, and runs the batch on its own inference thread (ONNX Runtime releases the
GIL, so the event loop and the decoders keep going meanwhile). Crops that arrive while a batch
runs wait in the queue and make the next one, so under load batches fill up without waiting,
and a lone request never waits for partners that cannot come: when every admitted image is
already in the batch, it runs at once.

Admission is counted here too: ``reserve`` admits a request's images (the number between upload
and answer is bounded, which bounds the memory of queued crops), ``skip`` says one of them will
never come (it did not decode), ``release`` that one was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import first_line
from ..model.detector import Detector
from .metrics import Metrics


class InferenceFailed(Exception):
    """ONNX Runtime failed on a batch: the server's fault, not the images'."""


@dataclass
class _Item:
    pixels: np.ndarray
    future: asyncio.Future[float]
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """One ORT session behind a queue; ``await score(crop)`` → p_fake (NaN when none)."""

    def __init__(
        self,
        detector: Detector,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_open: int = 1024,
        metrics: Metrics | None = None,
    ) -> None:
        self.detector = detector
        self.max_batch = detector.batch_size_hint or max_batch
        self.max_wait = max_wait_ms / 1000
        self.max_open = max_open
        self.metrics = metrics or Metrics()
        self.open = 0  # images admitted and not yet answered
        self.upcoming = 0  # images admitted and not yet taken into a batch (nor skipped)
        self.queue: asyncio.Queue[_Item] | None = None
        self.task: asyncio.Task[None] | None = None
        self.pool: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dfscan-infer")
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="dfscan-batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.queue is not None:
            while not self.queue.empty():
                item = self.queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(InferenceFailed("the server is shutting down"))
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def reserve(self, n: int) -> bool:
        """Admit ``n`` images, or refuse (False) when that would pass ``max_open``."""
        if self.open + n > self.max_open:
            return False
        self.open += n
        self.upcoming += n
        self.metrics.queued.set(self.open)
        return True

    def skip(self, n: int = 1) -> None:
        """``n`` admitted images will not be scored (they did not decode): wait for them no more."""
        self.upcoming = max(0, self.upcoming - n)

    def release(self, n: int = 1) -> None:
        """``n`` admitted images are answered (scored or not)."""
        self.open = max(0, self.open - n)
        self.metrics.queued.set(self.open)

    async def score(self, pixels: np.ndarray) -> float:
        """p_fake of one prepared crop (NaN if the model gives none); InferenceFailed."""
        assert self.queue is not None, "start() first"
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Item(pixels, future))
        return await future

    async def _collect(self) -> list[_Item]:
        assert self.queue is not None
        first = await self.queue.get()
        batch = [first]
        self.upcoming = max(0, self.upcoming - 1)
        deadline = first.arrived + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                if self.upcoming <= 0:  # nothing else admitted: nobody to wait for
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.upcoming = max(0, self.upcoming - 1)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [item for item in batch if not item.future.done()]  # a client may have gone
            if not live:
                continue
            started = time.perf_counter()
            try:
                scores = await loop.run_in_executor(
                    self.pool, self.detector.run, [item.pixels for item in live]
                )
            except asyncio.CancelledError:
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(InferenceFailed("the server is shutting down"))
                raise
            except Exception as exc:
                failure = InferenceFailed(f"inference failed: {first_line(exc)}")
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(failure)
                continue
            self.metrics.inference.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(live))
            for item, p in zip(live, scores, strict=True):
                if not item.future.done():
                    item.future.set_result(float(p))

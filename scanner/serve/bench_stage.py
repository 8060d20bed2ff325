"""``dfscan bench``'s ``serve`` stage: the HTTP server against ``dfscan scan`` on the same images.

A server (the same app and Service as ``dfscan serve``) runs in this process on 127.0.0.1 (a
free port, uvicorn in a thread); the load generator (:mod:`.load`) posts each image as one raw
request. Three arms in the same interleaved rounds (``bench_timing.run_rounds``): the scan of
the folder, the server at concurrency 32 and at concurrency 1. Throughput is a ratio to the
scan within each round; latency p50/p99 come from every request of the rounds.

The load generator shares this process (and its GIL) with the server, so the server's figure
is, if anything, low. Importing this module imports no web framework; ``bench_serve`` does.
"""

from __future__ import annotations

import importlib.util
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bench.timing import Arm, Rounds, Timing, run_rounds

if TYPE_CHECKING:
    from .load import Post
    from .service import Service

SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart")
CONCURRENCY = (32, 1)
SCAN = "scan"


def arm_name(concurrency: int) -> str:
    return f"serve, concurrency {concurrency}"


def serve_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in SERVE_MODULES)


@contextmanager
def running(service: Service) -> Iterator[str]:
    """The app over ``service`` on 127.0.0.1 (a free port) in a thread; yields its URL."""
    import uvicorn

    from .app import create_app

    class _Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # a thread cannot take signals
            pass

    config = uvicorn.Config(
        create_app(service), host="127.0.0.1", port=0, log_level="warning", access_log=False
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="dfscan-bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the benchmark's server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class LoadRun:
    """One call = ``total`` requests at ``concurrency``; returns their wall time and keeps every
    request's latency. A request answered other than 200, or a broken connection, fails it."""

    def __init__(self, url: str, posts: list[Post], concurrency: int, total: int) -> None:
        self.url, self.posts, self.concurrency, self.total = url, posts, concurrency, total
        self.latencies = Timing()

    def __call__(self) -> float:
        from .load import run_load

        report = run_load(self.url, self.posts, self.concurrency, self.total)
        bad = [o.status for o in report.outcomes if o.status != 200]
        if report.failures or bad or len(report.outcomes) != self.total:
            raise RuntimeError(
                f"the server failed the benchmark's load: statuses {sorted(set(bad))}, "
                f"{len(report.failures)} broken connections"
            )
        self.latencies.seconds += [o.latency_s for o in report.outcomes]
        return report.elapsed_s

    def arm(self) -> Arm:
        return Arm(self, self.total)

    def latency_ms(self) -> dict[str, float]:
        t = self.latencies
        return {"p50": 1e3 * t.percentile(50), "p99": 1e3 * t.percentile(99)}


def bench_serve(
    files: list[Path],
    scan_arm: Arm,
    model: Path,
    device: str,
    workers: int | None,
    rounds: int,
    turn_seconds: float,
    note: Callable[[str], None] = lambda message: None,
) -> tuple[dict[str, Any], Rounds]:
    """(``report["serve"]``, the rounds): the server over ``files`` (one image a request)
    against ``scan_arm`` (the scan of the same files)."""
    from .cli import build_service
    from .load import raw_post

    posts = [raw_post(p.read_bytes(), p.name) for p in files]
    service = build_service(model, device=device, workers=workers)
    with running(service) as url:
        # at concurrency 32, at least two requests per connection in a call
        loads = {c: LoadRun(url, posts, c, max(len(posts), 2 * c) if c > 1 else len(posts))
                 for c in CONCURRENCY}  # fmt: skip
        arms = {SCAN: scan_arm, **{arm_name(c): load.arm() for c, load in loads.items()}}
        timed = run_rounds(arms, rounds, turn_seconds, note)
    batches = service.metrics.batch_size
    out: dict[str, Any] = {
        "images": len(posts),
        "requests_per_call": {str(c): load.total for c, load in loads.items()},
        "provider": service.detector.provider,
        "max_batch": service.batcher.max_batch,
        "max_wait_ms": service.max_wait_ms,
        "mean_batch": batches.sum / batches.count if batches.count else None,
        "server": "in-process uvicorn on 127.0.0.1, load generator in the same process",
    }
    for c, load in loads.items():
        out[f"concurrency_{c}"] = {
            "images_per_s": timed.rate(arm_name(c)),
            "latency_ms": load.latency_ms(),
            "requests": len(load.latencies.seconds),
            "vs_scan": statistics.median(
                a / b for a, b in zip(timed.rates[arm_name(c)], timed.rates[SCAN], strict=True) if b
            ),
        }
    return out, timed

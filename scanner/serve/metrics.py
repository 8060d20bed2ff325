"""Prometheus metrics in the text exposition format (version 0.0.4), written here.

Six counters, gauges and histograms do not justify a dependency: each family renders its own
``# HELP``/``# TYPE`` lines and samples; label values are escaped as the format says. Updates
take one lock, so the inference thread and the event loop may both record.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        with self.lock:
            return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self.lock:
            items = sorted(self.values.items())
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        with self.lock:
            self.values[labels] = value


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help)
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        with self.lock:
            i = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
            self.counts[i] += 1
            self.sum += value
            self.count += 1

    def render(self) -> list[str]:
        with self.lock:
            counts, total, n = list(self.counts), self.sum, self.count
        lines = self.header()
        running = 0
        for bound, c in zip((*self.bounds, math.inf), counts, strict=True):
            running += c
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {running}')
        lines += [f"{self.name}_sum {_num(total)}", f"{self.name}_count {n}"]
        return lines


class Metrics:
    """The server's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.requests = Counter(
            "dfscan_http_requests_total",
            "HTTP requests answered, by route and status code.",
            ("route", "code"),
        )
        self.latency = Histogram(
            "dfscan_scan_request_seconds",
            "Time to answer a POST /v1/scan request (all its images), in seconds.",
            LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "dfscan_batch_size", "Images per ONNX Runtime batch.", BATCH_BUCKETS
        )
        self.inference = Histogram(
            "dfscan_inference_seconds",
            "Time of one ONNX Runtime batch, in seconds.",
            LATENCY_BUCKETS,
        )
        self.images = Counter(
            "dfscan_images_total",
            "Images received, by outcome: scored, or error (unreadable, refused, no score).",
            ("outcome",),
        )
        self.flagged = Counter(
            "dfscan_images_flagged_total", "Images whose verdict was fake at the threshold used."
        )
        self.rejected = Counter(
            "dfscan_rejected_requests_total",
            "Requests refused before scoring, by reason (body_too_large, too_many_files, "
            "busy, queue_full, unauthorized, bad_request).",
            ("reason",),
        )
        self.in_flight = Gauge("dfscan_requests_in_flight", "POST /v1/scan requests being handled.")
        self.queued = Gauge("dfscan_images_queued", "Images admitted and not yet scored.")

    def render(self) -> str:
        families = (
            self.requests,
            self.latency,
            self.batch_size,
            self.inference,
            self.images,
            self.flagged,
            self.rejected,
            self.in_flight,
            self.queued,
        )
        return "\n".join(line for f in families for line in f.render()) + "\n"

"""A load generator for ``dfscan serve``: many concurrent keep-alive connections posting images.

    python -m dfscan.scanner.serve.load http://127.0.0.1:8000 --images DIR \\
        --concurrency 32 --requests 2000

One asyncio thread, raw HTTP/1.1 on ``concurrency`` connections (no HTTP library, so the client
costs little CPU beside the server on the same machine). Each request posts one image as a raw
body (or ``--files-per-request`` of them as multipart), cycling through the images. Prints
requests/s, images/s, p50/p90/p99 latency, the status codes and the server's mean batch size
(from /metrics) as JSON. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from ..model.preprocess import has_image_extension

_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


@dataclass(frozen=True)
class Post:
    """One request to send: its body and content type."""

    body: bytes
    content_type: str
    images: int = 1


@dataclass(frozen=True)
class Outcome:
    index: int  # which of the ``total`` requests
    post: int  # which Post was sent
    status: int
    latency_s: float
    body: bytes


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)  # connections that broke (not HTTP codes)

    def latency_ms(self, q: float) -> float | None:
        lat = sorted(o.latency_s for o in self.outcomes)
        if not lat:
            return None
        return 1000 * lat[min(len(lat) - 1, max(0, round(q * (len(lat) - 1))))]

    def summary(self, posts: Sequence[Post]) -> dict[str, object]:
        n = len(self.outcomes)
        images = sum(posts[o.post].images for o in self.outcomes if o.status == 200)
        return {
            "requests": n,
            "statuses": {
                str(k): v for k, v in sorted(Counter(o.status for o in self.outcomes).items())
            },
            "connection_failures": len(self.failures),
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(n / self.elapsed_s, 2) if self.elapsed_s else None,
            "images_per_s": round(images / self.elapsed_s, 2) if self.elapsed_s else None,
            "p50_ms": _round(self.latency_ms(0.50)),
            "p90_ms": _round(self.latency_ms(0.90)),
            "p99_ms": _round(self.latency_ms(0.99)),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def raw_post(data: bytes, name: str) -> Post:
    return Post(data, _TYPES.get(Path(name).suffix.lower(), "application/octet-stream"))


def multipart_post(files: Sequence[tuple[str, bytes]]) -> Post:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, data in files:
        kind = _TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return Post(body, f"multipart/form-data; boundary={boundary}", len(files))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, headers, b"".join(parts)
    length = int(headers.get("content-length", "0"))
    return status, headers, await reader.readexactly(length)


async def _worker(
    host: str,
    port: int,
    path: str,
    posts: Sequence[Post],
    counter: list[int],
    total: int,
    extra: str,
    report: LoadReport,
) -> None:
    reader = writer = None
    try:
        while counter[0] < total:
            index = counter[0]
            counter[0] += 1
            post_i = index % len(posts)
            post = posts[post_i]
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {post.content_type}"
                f"\r\nContent-Length: {len(post.body)}\r\n{extra}\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                writer.write(head + post.body)
                await writer.drain()
                status, headers, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                report.failures.append(f"request {index}: {type(exc).__name__}: {exc}")
                writer.close()
                reader = writer = None
                continue
            report.outcomes.append(
                Outcome(index, post_i, status, time.perf_counter() - started, body)
            )
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run(
    url: str, posts: Sequence[Post], concurrency: int, total: int, api_key: str | None
) -> LoadReport:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path.rstrip("/") or "") + "/v1/scan"
    extra = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    report, counter = LoadReport(), [0]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _worker(host, port, path, posts, counter, total, extra, report)
            for _ in range(concurrency)
        )
    )
    report.elapsed_s = time.perf_counter() - started
    report.outcomes.sort(key=lambda o: o.index)
    return report


def run_load(
    url: str,
    posts: Sequence[Post],
    concurrency: int = 32,
    total: int = 2000,
    api_key: str | None = None,
) -> LoadReport:
    """Send ``total`` requests (cycling through ``posts``) on ``concurrency`` connections."""
    if not posts:
        raise ValueError("nothing to send")
    return asyncio.run(_run(url, posts, concurrency, total, api_key))


def scrape_batches(url: str, api_key: str | None = None) -> tuple[float, float]:
    """(sum, count) of the server's ``dfscan_batch_size`` histogram."""
    from urllib.request import Request, urlopen

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with urlopen(Request(url.rstrip("/") + "/metrics", headers=headers), timeout=30) as r:
        text = r.read().decode()
    found = dict(re.findall(r"^dfscan_batch_size_(sum|count) (\S+)$", text, re.M))
    return float(found.get("sum", 0)), float(found.get("count", 0))


def load_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    files: list[Path] = []
    for p in map(Path, paths):
        files += (
            sorted(f for f in p.rglob("*") if f.is_file() and has_image_extension(f))
            if (p.is_dir())
            else [p]
        )
    return [(f.name, f.read_bytes()) for f in files]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--files-per-request", type=int, default=1, help=">1: multipart")
    parser.add_argument("--warmup", type=int, default=64, help="requests sent first, not counted")
    args = parser.parse_args(argv)
    images = load_images(args.images)
    if not images:
        print("no images found", file=sys.stderr)
        return 2
    k = args.files_per_request
    if k == 1:
        posts = [raw_post(data, name) for name, data in images]
    else:
        posts = [multipart_post(images[i : i + k]) for i in range(0, len(images), k)]
    key = os.environ.get("DFSCAN_API_KEY")
    if args.warmup:
        run_load(args.url, posts, args.concurrency, args.warmup, key)
    before = scrape_batches(args.url, key)
    report = run_load(args.url, posts, args.concurrency, args.requests, key)
    after = scrape_batches(args.url, key)
    summary = report.summary(posts)
    batches = after[1] - before[1]
    summary["mean_batch_size"] = round((after[0] - before[0]) / batches, 2) if batches else None
    summary["concurrency"] = args.concurrency
    summary["files_per_request"] = k
    summary["distinct_images"] = len(images)
    print(json.dumps(summary, indent=2))
    statuses = cast("dict[str, int]", summary["statuses"])  # status -> count, made above
    return 0 if set(statuses) <= {"200"} and not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())

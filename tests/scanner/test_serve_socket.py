"""``dfscan serve`` on a real socket: uvicorn on 127.0.0.1 (a free port, in a thread), a bounded
load test whose every answer must equal the Detector's, the key over the wire, and the page in
headless Chromium (a real upload through the page's own code, the rendered verdicts read back)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


from dfscan.scanner.model.detector import Detector
from dfscan.scanner.serve.bench_stage import running
from dfscan.scanner.serve.cli import build_service
from dfscan.scanner.serve.load import Post, multipart_post, raw_post, run_load
from dfscan.scanner.serve.service import Service

from ..browser import CHROMIUM, CHROMIUM_FLAGS, needs_chromium
from ..conftest import decompression_bomb_png, encoded

KEY = "socket-test-key"


def serving(service: Service) -> Iterator[str]:
    """The app on a free port of 127.0.0.1 (the bench's own server runner), as a generator."""
    with running(service) as base:
        yield base


@pytest.fixture
def url(brightness_onnx: Path) -> Iterator[str]:
    yield from serving(build_service(brightness_onnx, device="cpu"))


def noise(seed: int, size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def corpus() -> list[tuple[str, bytes]]:
    """Photos of several sizes and formats, and broken files among them."""
    items = [(f"n{i}.png", encoded(noise(i, (20 + 3 * i, 30)), "PNG")) for i in range(8)]
    items += [(f"j{i}.jpg", encoded(noise(50 + i, (40, 24 + i)), "JPEG")) for i in range(8)]
    items += [
        (f"w{i}.webp", encoded(noise(80 + i, (18, 18)), "WEBP", lossless=True)) for i in range(2)
    ]
    jpeg = items[8][1]
    items += [
        ("cut.jpg", jpeg[: len(jpeg) // 2]),
        ("text.png", b"no image here"),
        ("empty.jpg", b""),
    ]
    items += [("bomb.png", decompression_bomb_png())]
    return items


@pytest.mark.slow
def test_2000_requests_at_concurrency_32_all_answered_as_the_detector_scores(
    url: str, brightness_onnx: Path
):
    images = corpus()
    detector = Detector.from_onnx(brightness_onnx, "cpu")
    expected: dict[str, float | None] = {}
    for name, data in images:
        try:
            expected[name] = float(detector.predict([io.BytesIO(data)])[0])
        except Exception:
            expected[name] = None
    assert sum(v is None for v in expected.values()) == 4
    raw = [(name, data) for name, data in images if data]  # an empty raw body is a 400
    tail = [images[0], *((n, d) for n, d in images if not d), images[-1]]
    posts: list[Post] = [raw_post(data, name) for name, data in raw]
    posts.append(multipart_post(tail))  # with the empty file: a result with an error
    names = [[name] for name, _ in raw] + [[name for name, _ in tail]]
    report = run_load(url, posts, concurrency=32, total=2000)
    assert report.failures == []
    assert len(report.outcomes) == 2000
    statuses = {o.status for o in report.outcomes}
    assert statuses == {200}, statuses
    for outcome in report.outcomes:
        results = json.loads(outcome.body)["results"]
        want = names[outcome.post]
        assert len(results) == len(want)
        for result, name in zip(results, want, strict=True):
            assert result["name"] == ("image" if outcome.post < len(raw) else name)
            if expected[name] is None:
                assert result["p_fake"] is None and result["error"], (name, result)
            else:
                assert result["error"] is None
                assert result["p_fake"] == round(expected[name], 6), name
    from urllib.request import urlopen

    with urlopen(url + "/metrics", timeout=30) as r:
        metrics = r.read().decode()
    batches = dict(
        line.split(" ") for line in metrics.splitlines() if line.startswith("dfscan_batch_size_")
    )
    assert float(batches["dfscan_batch_size_count"]) >= 1
    assert 'dfscan_http_requests_total{route="/v1/scan",code="200"} 2000' in metrics


def test_the_key_over_a_socket(brightness_onnx: Path):
    service = build_service(brightness_onnx, device="cpu", api_key=KEY)
    for base in serving(service):
        post = raw_post(encoded(np.full((20, 20, 3), 255, np.uint8), "PNG"), "w.png")
        refused = run_load(base, [post], concurrency=2, total=4)
        assert {o.status for o in refused.outcomes} == {401}
        wrong = run_load(base, [post], concurrency=1, total=1, api_key=KEY + "x")
        assert wrong.outcomes[0].status == 401
        ok = run_load(base, [post], concurrency=2, total=4, api_key=KEY)
        assert {o.status for o in ok.outcomes} == {200}
        assert json.loads(ok.outcomes[0].body)["results"][0]["verdict"] == "fake"


# --- the page in a real browser -----------------------------------------------------------------

PAGE_FLAGS = [
    *CHROMIUM_FLAGS,
    "--virtual-time-budget=30000",  # run the page's fetches to the end before dumping
]


def chromium(page: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *PAGE_FLAGS, f"--user-data-dir={profile}", *args, page],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def probe_url(base: str, images: list[tuple[str, bytes, str]]) -> str:
    query = "&".join(
        f"probe={quote(f'data:{kind};base64,' + base64.b64encode(data).decode(), safe='')}"
        f"&probe-name={quote(name)}"
        for name, data, kind in images
    )
    return f"{base}/?{query}"


def cards(dom: str) -> list[str]:
    return [part.split("</li>")[0] for part in dom.split('<li class="card"')[1:]]


@needs_chromium
@pytest.mark.slow
def test_the_page_uploads_and_shows_verdicts_in_headless_chromium(url: str, tmp_path: Path):
    white = encoded(np.full((24, 24, 3), 255, np.uint8), "PNG")
    dark = encoded(np.full((24, 24, 3), 51, np.uint8), "PNG")
    page = probe_url(
        url,
        [("white.png", white, "image/png"), ("dark.png", dark, "image/png"),
         ("broken.png", white[:40], "image/png")],
    )  # fmt: skip
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-state="done"' in html, html[-3000:]
    assert 'data-model-sha256="' in html and "brightness.onnx" in html
    assert '<form id="key-form" class="key" hidden="">' in html  # no key needed: no prompt
    order = [c.split('class="name">')[1].split("<")[0] for c in cards(html)]
    assert order == ["white.png", "dark.png", "broken.png"]
    shown = {c.split('class="name">')[1].split("<")[0]: c for c in cards(html)}
    assert set(shown) == {"white.png", "dark.png", "broken.png"}
    assert 'data-verdict="fake"' in shown["white.png"] and 'data-p-fake="1"' in shown["white.png"]
    assert "p_fake 1.000 ≥ threshold 0.5" in shown["white.png"]
    assert (
        'data-verdict="real"' in shown["dark.png"]
        and "p_fake 0.200 &lt; threshold 0.5" in (shown["dark.png"])
    )
    assert 'data-verdict="error"' in shown["broken.png"]
    assert "not a readable image" in shown["broken.png"]
    for card in shown.values():
        assert '<img alt="thumbnail of' in card and 'src="blob:' in card
        assert "no provenance declared" in card

    shot = tmp_path / "serve-page.png"
    taken = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1100,900")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1100, 900)
        assert len(np.unique(np.asarray(im.convert("L").resize((64, 64))))) > 20  # not blank
    keep = os.environ.get("DFSCAN_TEST_ARTIFACTS")
    if keep:  # CI keeps the screenshot
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "serve-page.png")


@needs_chromium
@pytest.mark.slow
def test_the_page_asks_for_a_key_and_shows_refusals(brightness_onnx: Path, tmp_path: Path):
    """The browser check can fail: without the key nothing is scored and the page says so."""
    service = build_service(brightness_onnx, device="cpu", api_key=KEY)
    for base in serving(service):
        white = encoded(np.full((24, 24, 3), 255, np.uint8), "PNG")
        dom = chromium(probe_url(base, [("white.png", white, "image/png")]), tmp_path, "--dump-dom")
        html = dom.stdout
        assert "this server needs an API key" in html
        assert '<form id="key-form" class="key">' in html  # shown (not hidden)
        (card,) = cards(html)
        assert 'data-verdict="error"' in card and "missing API key" in card

"""``dfscan serve`` through FastAPI's TestClient: every endpoint, the limits, the key, bad input
(the scanner's own corpus of broken files among it) and the command's checks before it listens.
The brightness model (p_fake = mean brightness) gives exact answers to compare with."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from dfscan.scanner.cli.app import app as cli_app
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.scan.run import ScanOptions, file_sha256, run_scan
from dfscan.scanner.serve import cli as serve_cli
from dfscan.scanner.serve.app import create_app
from dfscan.scanner.serve.batcher import Batcher
from dfscan.scanner.serve.limits import Limits, check_pixels, is_loopback
from dfscan.scanner.serve.load import multipart_post
from dfscan.scanner.serve.metrics import Metrics

from ..conftest import decompression_bomb_png, encoded, write_awkward_files

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # starlette's TestClient

runner = CliRunner()
KEY = "s3cret-key-for-tests"


def png(value: int, size: tuple[int, int] = (24, 24)) -> bytes:
    return encoded(np.full((*size, 3), value, np.uint8), "PNG")


def make_client(model: Path, **kwargs) -> TestClient:
    service = serve_cli.build_service(model, device="cpu", **kwargs)
    return TestClient(create_app(service))


@pytest.fixture
def client(brightness_onnx: Path):
    with make_client(brightness_onnx) as c:
        yield c


@pytest.fixture
def keyed(brightness_onnx: Path):
    with make_client(brightness_onnx, api_key=KEY) as c:
        yield c


def files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


# --- scoring -----------------------------------------------------------------------------------


def test_a_raw_body_is_one_scan_row(client: TestClient, brightness_onnx: Path):
    r = client.post("/v1/scan", content=png(255), headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    body = r.json()
    sha = file_sha256(brightness_onnx)
    assert body["model_sha256"] == sha and body["threshold"] == 0.5
    (result,) = body["results"]
    assert result == {
        "name": "image",
        "p_fake": 1.0,
        "verdict": "fake",
        "threshold": 0.5,
        "model_sha256": sha,
        "width": 24,
        "height": 24,
        "format": "PNG",
        "error": None,
        "provenance": None,
        "provenance_detail": None,
    }
    named = client.post(
        "/v1/scan?name=black.png",
        content=png(0),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert named.json()["results"][0] | {"model_sha256": ""} == {
        **result,
        "name": "black.png",
        "p_fake": 0.0,
        "verdict": "real",
        "model_sha256": "",
    }


def test_multipart_files_come_back_in_order(client: TestClient):
    values = [0, 51, 255, 128, 204]
    r = client.post("/v1/scan", files=files(*((f"g{v}.png", png(v)) for v in values)))
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["name"] for x in results] == [f"g{v}.png" for v in values]
    assert [x["p_fake"] for x in results] == pytest.approx([v / 255 for v in values], abs=1e-6)
    assert [x["verdict"] for x in results] == ["real", "real", "fake", "fake", "fake"]


def test_a_threshold_per_request(client: TestClient):
    r = client.post("/v1/scan?threshold=0.9", files=files(("g.png", png(204))))
    assert r.json()["results"][0]["verdict"] == "real" and r.json()["threshold"] == 0.9
    bad = client.post("/v1/scan?threshold=2", files=files(("g.png", png(204))))
    assert bad.status_code == 422 and "threshold" in bad.json()["error"]


def test_the_scanners_bad_input_corpus_gives_the_scans_answers(
    client: TestClient, brightness_onnx: Path, tmp_path: Path
):
    """Every regular file of the scanner's awkward corpus, uploaded in one request: one result
    each, the scan's score or the scan's kind of error, never a failed request."""
    root = tmp_path / "corpus"
    expected = write_awkward_files(root)
    regular = {
        rel: (root / rel).read_bytes()
        for rel in expected
        if (root / rel).is_file() and not (root / rel).is_symlink() and rel != "bad/unreadable.png"
    }
    assert len(regular) >= 12
    r = client.post("/v1/scan", files=files(*regular.items()))
    assert r.status_code == 200
    served = {x["name"]: x for x in r.json()["results"]}
    assert set(served) == set(regular)
    scan = run_scan(
        ScanOptions([root], brightness_onnx, jsonl=tmp_path / "rows.jsonl", device="cpu")
    )
    assert scan.scanned > 0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    by_rel = {Path(row["path"]).relative_to(root).as_posix(): row for row in rows}
    for rel, want in expected.items():
        if rel not in regular:
            continue
        got, row = served[rel], by_rel[rel]
        if isinstance(want, str):
            assert got["p_fake"] is None and want in got["error"], (rel, got)
            assert str(root) not in got["error"] and "BytesIO" not in got["error"]
        else:
            assert got["error"] is None, (rel, got)
        for key in ("p_fake", "verdict", "width", "height", "format", "provenance"):
            assert got[key] == row[key], (rel, key)
        assert (got["error"] is None) == (row["error"] is None)


def test_huge_dimensions_are_refused_from_the_header(brightness_onnx: Path):
    with make_client(brightness_onnx, limits=Limits(max_pixels=1000)) as c:
        r = c.post(
            "/v1/scan",
            files=files(("small.png", png(255, (20, 20))), ("big.png", png(0, (40, 40)))),
        )
        small, big = r.json()["results"]
        assert small["verdict"] == "fake"
        assert big["p_fake"] is None and "40×40 pixels is over this server's limit" in big["error"]
        bomb = c.post(
            "/v1/scan", content=decompression_bomb_png(), headers={"Content-Type": "image/png"}
        )
        assert bomb.status_code == 200
        assert "decompression bomb" in bomb.json()["results"][0]["error"]


def test_check_pixels_reads_only_the_header():
    check_pixels(png(0, (10, 10)), 100)
    with pytest.raises(Exception, match="over this server's limit"):
        check_pixels(png(0, (10, 11)), 100)
    check_pixels(b"not an image", 1)  # the decoder reports it


# --- bad requests ------------------------------------------------------------------------------


def error_of(r) -> str:
    body = r.json()
    assert set(body) == {"error", "status"} and body["status"] == r.status_code
    return body["error"]


def test_bad_requests_get_json_errors_never_500(client: TestClient):
    assert "empty body" in error_of(
        empty := client.post("/v1/scan", content=b"", headers={"Content-Type": "image/jpeg"})
    )
    assert empty.status_code == 400
    wrong = client.post("/v1/scan", json={"image": "x"})
    assert wrong.status_code == 415 and "unsupported content type" in error_of(wrong)
    text = client.post("/v1/scan", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    no_files = client.post("/v1/scan", data={"field": "value"}, files={})
    assert no_files.status_code in (400, 415)
    fields_only = client.post(
        "/v1/scan",
        content=b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert fields_only.status_code == 400 and "no file" in error_of(fields_only)
    no_boundary = client.post(
        "/v1/scan", content=b"xx", headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    garbage = client.post(
        "/v1/scan",
        content=b"\x00\xff garbage without any boundary line" * 50,
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert garbage.status_code in (200, 400) and garbage.status_code != 500
    zero_byte = client.post("/v1/scan", files=files(("empty.jpg", b"")))
    assert zero_byte.status_code == 200
    assert "not a readable image" in zero_byte.json()["results"][0]["error"]
    assert client.get("/v1/scan").status_code == 405
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and error_of(missing)


def test_a_thousand_files_in_one_request_are_refused(client: TestClient):
    post = multipart_post([(f"{i}.png", png(i % 256, (8, 8))) for i in range(1000)])
    r = client.post("/v1/scan", content=post.body, headers={"Content-Type": post.content_type})
    assert r.status_code == 413 and "more than 64 files" in error_of(r)
    ok = multipart_post([(f"{i}.png", png(i, (8, 8))) for i in range(64)])
    r = client.post("/v1/scan", content=ok.body, headers={"Content-Type": ok.content_type})
    assert r.status_code == 200 and len(r.json()["results"]) == 64


def test_bodies_over_the_limit_are_refused(brightness_onnx: Path):
    with make_client(brightness_onnx, limits=Limits(max_body_bytes=1000)) as c:
        big = encoded(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), "PNG")
        assert len(big) > 1000
        declared = c.post("/v1/scan", content=big, headers={"Content-Type": "image/png"})
        assert declared.status_code == 413 and "1,000 bytes" in error_of(declared)

        def chunks():  # no Content-Length: counted as it streams
            for i in range(0, len(big), 256):
                yield big[i : i + 256]

        streamed = c.post("/v1/scan", content=chunks(), headers={"Content-Type": "image/png"})
        assert streamed.status_code == 413
        parts = c.post("/v1/scan", files=files(("a.png", big)))
        assert parts.status_code == 413
        assert c.post("/v1/scan", content=png(0), headers={"Content-Type": "image/png"}).is_success


def test_too_many_requests_429_and_a_full_queue_503(client: TestClient):
    service = client.app_state_service  # type: ignore[attr-defined]
    service.in_flight = service.limits.max_requests
    busy = client.post("/v1/scan", content=png(0), headers={"Content-Type": "image/png"})
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1" and error_of(busy)
    service.in_flight = 0
    service.batcher.open = service.limits.max_queued_images
    full = client.post("/v1/scan", content=png(0), headers={"Content-Type": "image/png"})
    assert full.status_code == 503 and "too many images queued" in error_of(full)
    assert client.get("/readyz").status_code == 503
    service.batcher.open = 0
    assert client.get("/readyz").json() == {"status": "ready"}
    metrics = client.get("/metrics").text
    assert 'dfscan_rejected_requests_total{reason="busy"} 1' in metrics
    assert 'dfscan_rejected_requests_total{reason="queue_full"} 1' in metrics


@pytest.fixture(autouse=True)
def _expose_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach the service behind a TestClient as ``client.app_state_service``."""
    original = create_app

    def create(service):
        app = original(service)
        app.state.service = service
        return app

    monkeypatch.setattr(sys.modules[__name__], "create_app", create)
    monkeypatch.setattr(
        TestClient,
        "app_state_service",
        property(lambda self: self.app.state.service),
        raising=False,
    )


# --- the key -----------------------------------------------------------------------------------


def test_the_api_key(keyed: TestClient):
    image = {"content": png(255), "headers": {"Content-Type": "image/png"}}
    missing = keyed.post("/v1/scan", **image)
    assert missing.status_code == 401 and "missing API key" in error_of(missing)
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = keyed.post(
        "/v1/scan", content=png(255), headers={"Content-Type": "image/png", "X-API-Key": "nope"}
    )
    assert wrong.status_code == 401 and "wrong API key" in error_of(wrong)
    prefix = keyed.post(
        "/v1/scan", content=png(255), headers={"Content-Type": "image/png", "X-API-Key": KEY[:-1]}
    )
    assert prefix.status_code == 401
    bearer = keyed.post(
        "/v1/scan",
        content=png(255),
        headers={"Content-Type": "image/png", "Authorization": f"Bearer {KEY}"},
    )
    assert bearer.status_code == 200 and bearer.json()["results"][0]["verdict"] == "fake"
    header = keyed.post(
        "/v1/scan", content=png(0), headers={"Content-Type": "image/png", "X-API-Key": KEY}
    )
    assert header.status_code == 200
    for path in ("/v1/model", "/metrics"):
        assert keyed.get(path).status_code == 401
        assert keyed.get(path, headers={"X-API-Key": KEY}).status_code == 200
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert keyed.get(path).status_code == 200  # probes and the page itself need no key
    assert 'reason="unauthorized"' in keyed.get("/metrics", headers={"X-API-Key": KEY}).text


# --- the other endpoints -----------------------------------------------------------------------


def test_model_health_and_docs(client: TestClient, brightness_onnx: Path):
    info = client.get("/v1/model").json()
    assert info["name"] == "brightness.onnx" and info["sha256"] == file_sha256(brightness_onnx)
    assert info["arch"] == "brightness_test" and info["threshold"] == 0.5
    assert info["spec"]["preprocess"]["size"] == 16 and info["card"] is None
    assert info["limits"]["max_files"] == 64 and info["provider"] == "CPUExecutionProvider"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    scan = schema["paths"]["/v1/scan"]["post"]
    assert {"multipart/form-data", "image/*"} <= set(scan["requestBody"]["content"])
    assert {"200", "401", "413", "429", "503"} <= set(scan["responses"])
    assert {"/v1/model", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


def test_the_page_and_its_assets_are_served_without_a_cdn(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text
    assert client.get("/static/../cli.py").status_code == 404


def test_metrics_count_requests_images_batches_and_flags(client: TestClient):
    client.post("/v1/scan", files=files(("w.png", png(255)), ("b.png", png(0)), ("x.png", b"x")))
    client.post("/v1/scan", content=b"", headers={"Content-Type": "image/png"})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'dfscan_images_total{outcome="scored"} 2' in text
    assert 'dfscan_images_total{outcome="error"} 1' in text
    assert "dfscan_images_flagged_total 1" in text
    assert 'dfscan_http_requests_total{route="/v1/scan",code="200"} 1' in text
    assert 'dfscan_http_requests_total{route="/v1/scan",code="400"} 1' in text
    assert "dfscan_batch_size_sum 2" in text
    assert 'dfscan_scan_request_seconds_bucket{le="+Inf"} 1' in text
    assert "# TYPE dfscan_scan_request_seconds histogram" in text


def test_histogram_buckets_are_cumulative():
    m = Metrics()
    for v in (1, 3, 3, 40, 1000):
        m.batch_size.observe(v)
    lines = m.batch_size.render()
    assert 'dfscan_batch_size_bucket{le="1"} 1' in lines
    assert 'dfscan_batch_size_bucket{le="4"} 3' in lines
    assert 'dfscan_batch_size_bucket{le="64"} 4' in lines
    assert 'dfscan_batch_size_bucket{le="+Inf"} 5' in lines
    assert "dfscan_batch_size_count 5" in lines and "dfscan_batch_size_sum 1047" in lines
    m.requests.inc(1, 'a"b\\c', "200")
    assert 'route="a\\"b\\\\c"' in m.requests.render()[-1]


# --- the batcher -------------------------------------------------------------------------------


def test_the_batcher_coalesces_concurrent_images_and_never_waits_alone(brightness_onnx: Path):
    detector = Detector.from_onnx(brightness_onnx, "cpu")
    crops = [np.full((16, 16, 3), v, np.uint8) for v in range(0, 250, 10)]

    async def main() -> tuple[list[float], float]:
        batcher = Batcher(detector, max_batch=8, max_wait_ms=60_000)
        batcher.start()
        try:
            assert batcher.reserve(len(crops))
            scores = await asyncio.gather(*(batcher.score(c) for c in crops))
            batcher.release(len(crops))
            assert batcher.reserve(1)
            lone = await asyncio.wait_for(batcher.score(crops[3]), 30)  # not 60 s
            batcher.release(1)
            assert not batcher.reserve(batcher.max_open + 1)
            return scores, lone
        finally:
            await batcher.stop()

    scores, lone = asyncio.run(main())
    assert scores == pytest.approx([v / 255 for v in range(0, 250, 10)], abs=1e-6)
    assert lone == pytest.approx(30 / 255, abs=1e-6)


def test_batches_fill_up_to_max_batch(brightness_onnx: Path):
    detector = Detector.from_onnx(brightness_onnx, "cpu")
    metrics = Metrics()

    async def main() -> None:
        batcher = Batcher(detector, max_batch=8, max_wait_ms=60_000, metrics=metrics)
        batcher.start()
        try:
            batcher.reserve(20)
            await asyncio.gather(
                *(batcher.score(np.zeros((16, 16, 3), np.uint8)) for _ in range(20))
            )
        finally:
            await batcher.stop()

    asyncio.run(main())
    assert metrics.batch_size.count == 3 and metrics.batch_size.sum == 20  # 8 + 8 + 4


# --- the command -------------------------------------------------------------------------------


def test_refuses_a_public_address_without_a_key(brightness_onnx: Path, monkeypatch):
    monkeypatch.delenv(serve_cli.KEY_ENV, raising=False)
    done = runner.invoke(cli_app, ["serve", "-m", str(brightness_onnx), "--host", "0.0.0.0"])
    assert done.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in " ".join(done.output.split())
    assert "Traceback" not in done.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path):
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\n")
    assert serve_cli.read_api_key(key_file, {}) == KEY
    assert serve_cli.read_api_key(None, {serve_cli.KEY_ENV: KEY}) == KEY
    assert serve_cli.read_api_key(None, {}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(Exception, match="is empty"):
        serve_cli.read_api_key(tmp_path / "empty", {})
    with pytest.raises(Exception, match="set but empty"):
        serve_cli.read_api_key(None, {serve_cli.KEY_ENV: " "})


def test_the_command_builds_the_service_and_serves_it(brightness_onnx: Path, tmp_path, monkeypatch):
    served = {}
    monkeypatch.setattr(
        serve_cli, "run_server", lambda service, host, port, log: served.update(locals())
    )
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    args = ["serve", "-m", str(brightness_onnx), "--host", "0.0.0.0", "--port", "9"]
    done = runner.invoke(
        cli_app, [*args, "--api-key-file", str(key_file), "--device", "cpu", "--max-files", "3"]
    )
    assert done.exit_code == 0, done.output
    service = served["service"]
    assert (served["host"], served["port"]) == ("0.0.0.0", 9)
    assert service.api_key == KEY and service.limits.max_files == 3
    assert "API key required" in " ".join(done.output.split())


def test_a_missing_extra_is_one_line_and_exit_3(brightness_onnx: Path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    done = runner.invoke(cli_app, ["serve", "-m", str(brightness_onnx)])
    assert done.exit_code == 3
    assert 'pip install "dfscan[serve]"' in done.output and "Traceback" not in done.output


def test_a_missing_model_is_a_clean_error(tmp_path: Path):
    done = runner.invoke(cli_app, ["serve", "-m", str(tmp_path / "nope.onnx"), "--device", "cpu"])
    assert done.exit_code in (2, 4) and "Traceback" not in done.output


def test_the_cli_imports_no_web_framework_until_serving():
    code = (
        "import sys, dfscan.scanner.cli.app, dfscan.scanner.serve, dfscan.scanner.serve.cli;"
        "print(sorted(m for m in ('fastapi','uvicorn','starlette','python_multipart') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

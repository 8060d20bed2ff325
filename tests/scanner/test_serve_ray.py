"""``dfscan serve --engine ray``: the same app as a Ray Serve deployment (2 replicas on a local
Ray with 2 CPUs, its proxy on 127.0.0.1), answering as the local server does; the key and the
loopback rule as the local server's; a missing Ray Serve is one line and exit 3."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from dfscan.scanner.cli.app import app as cli_app
from dfscan.scanner.serve import cli as serve_cli
from dfscan.scanner.serve.cli import build_service
from dfscan.scanner.serve.limits import Limits
from dfscan.scanner.serve.load import Post, multipart_post, raw_post, run_load

from ..conftest import encoded
from .test_serve_socket import corpus, serving

KEY = "ray-test-key"
runner = CliRunner()


def test_a_public_address_without_a_key_is_refused_before_ray_starts(
    brightness_onnx: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(serve_cli.KEY_ENV, raising=False)
    started = []
    monkeypatch.setattr(serve_cli, "serve_on_ray", lambda *a, **k: started.append(1))
    args = ["serve", "-m", str(brightness_onnx), "--engine", "ray", "--host", "0.0.0.0"]
    done = runner.invoke(cli_app, args)
    assert done.exit_code == 2, done.output
    assert "refusing to listen on 0.0.0.0 without an API key" in " ".join(done.output.split())
    assert started == []


def test_without_ray_serve_one_line_and_exit_3(
    brightness_onnx: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # `import ray.serve` fails
    done = runner.invoke(cli_app, ["serve", "-m", str(brightness_onnx), "--engine", "ray"])
    assert done.exit_code == 3, done.output
    assert 'pip install "dfscan[serve-ray]"' in " ".join(done.output.split())
    assert "Traceback" not in done.output


def test_the_command_passes_the_options_to_ray(
    brightness_onnx: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    seen: dict = {}
    monkeypatch.setattr(serve_cli, "serve_on_ray", lambda model, **kw: seen.update(kw, model=model))
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    args = ["serve", "-m", str(brightness_onnx), "--engine", "ray", "--replicas", "3"]
    args += ["--host", "0.0.0.0", "--api-key-file", str(key_file), "--max-files", "5"]
    done = runner.invoke(cli_app, [*args, "--cpus-per-replica", "0.5", "--ray-address", "auto"])
    assert done.exit_code == 0, done.output
    assert seen["model"] == brightness_onnx and seen["replicas"] == 3
    assert seen["key"] == KEY and seen["host"] == "0.0.0.0" and seen["limits"].max_files == 5
    assert seen["cpus_per_replica"] == 0.5 and seen["address"] == "auto"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: dfscan[serve-ray]")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_two_replicas_answer_as_the_local_server(local_ray: None, brightness_onnx: Path):
    from ray import serve

    from dfscan.scanner.serve.ray_deploy import APP_NAME, free_port

    images = corpus()
    raw = [(name, data) for name, data in images if data]
    posts: list[Post] = [raw_post(data, name) for name, data in raw]
    posts.append(multipart_post(images))  # every file in one request, the empty one too
    limits = Limits(max_files=64)
    server = serve_cli.serve_on_ray(
        brightness_onnx,
        host="127.0.0.1",
        port=free_port(),
        key=KEY,
        device="cpu",
        max_batch=8,
        max_wait_ms=5.0,
        workers=None,
        limits=limits,
        provenance=True,
        replicas=2,
        cpus_per_replica=1.0,
        address=None,
        block=False,
    )
    try:
        status = serve.status().applications[APP_NAME]
        assert status.status == "RUNNING"
        assert status.deployments["dfscan"].replica_states == {"RUNNING": 2}

        over_ray = run_load(server.url, posts, concurrency=8, total=len(posts) * 4, api_key=KEY)
        assert over_ray.failures == []
        assert {o.status for o in over_ray.outcomes} == {200}

        local = build_service(brightness_onnx, device="cpu", api_key=KEY, limits=limits)
        for base in serving(local):
            direct = run_load(base, posts, concurrency=1, total=len(posts), api_key=KEY)
        assert {o.status for o in direct.outcomes} == {200}
        want = {o.post: json.loads(o.body) for o in direct.outcomes}
        for outcome in over_ray.outcomes:
            assert json.loads(outcome.body) == want[outcome.post]
        every = want[len(posts) - 1]["results"]
        assert len(every) == len(images) and sum(r["error"] is not None for r in every) == 4
        assert any(r["verdict"] == "fake" for r in every) and any(
            r["verdict"] == "real" for r in every
        )

        white = raw_post(encoded(np.full((20, 20, 3), 255, np.uint8), "PNG"), "w.png")
        refused = run_load(server.url, [white], concurrency=1, total=2)
        assert {o.status for o in refused.outcomes} == {401}
        wrong = run_load(server.url, [white], concurrency=1, total=1, api_key=KEY + "x")
        assert wrong.outcomes[0].status == 401
        from urllib.request import urlopen

        with urlopen(server.url + "/healthz", timeout=30) as r:  # open without a key, as locally
            assert json.loads(r.read()) == {"status": "ok"}
    finally:
        server.stop()

"""``--engine ray``: the same rows as the local engine, resumable, and over a real S3 protocol
(a moto server on 127.0.0.1 that the test starts; nothing of dfscan is mocked)."""

from __future__ import annotations

import csv
import json
import os
import socket
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import EXIT_BUG, app
from dfscan.scanner.errors import DataError, ExitCode, MissingExtra, ModelError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.scan import engine_ray
from dfscan.scanner.scan.discovery import Found
from dfscan.scanner.scan.engine_ray import RayOptions
from dfscan.scanner.scan.run import ScanOptions, run_scan
from dfscan.scanner.scan.sources import require

from ..conftest import decompression_bomb_png, write_image
from ..onnx_models import grey
from ..provenance_files import FRONT_ENDS, png_with_text, save_with_exif
from .test_scan_run import StopAfter, _run_main

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "dfscan[ray]")')
pytestmark = pytest.mark.slow

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on loopback, for the whole module (started before Ray, so the actors
    inherit its address)."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def local_ray(s3_endpoint):
    """One local Ray with 2 CPUs for the module (a scan joins it instead of starting its own)."""
    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def bad_inputs_folder(root: Path) -> Path:
    """Scores, errors of every kind the scanner tests make, and provenance."""
    for i, v in enumerate((10, 60, 200, 250)):
        write_image(root / "real" / f"r{i}.png", grey(v))
        write_image(root / "gan" / f"g{i}.jpg", grey(255 - v), quality=95)
    png_with_text(root / "gan" / "comfy.png", FRONT_ENDS["comfyui"], value=30)
    save_with_exif(root / "gan" / "mj.jpg", software="Midjourney", value=220)
    (root / "gan" / "empty.png").write_bytes(b"")
    (root / "gan" / "text.jpg").write_bytes(b"this is not a jpeg")
    (root / "gan" / "bomb.png").write_bytes(decompression_bomb_png())
    full = (root / "real" / "r0.png").read_bytes()
    (root / "real" / "truncated.png").write_bytes(full[: len(full) // 2])
    write_image(root / "loose.webp", grey(128))
    return root


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def ray_options(**kw) -> RayOptions:
    return RayOptions(workers=kw.pop("workers", 2), **kw)


def assert_same_rows(local: dict, remote: dict, rename=lambda p: p) -> None:
    assert sorted(map(rename, local)) == sorted(remote)
    for path, a in local.items():
        b = remote[rename(path)]
        # the same words for a broken file, each naming its own path
        assert a["error"].replace(path, "<file>") == b["error"].replace(rename(path), "<file>")
        if a["p_fake"]:
            assert abs(float(a["p_fake"]) - float(b["p_fake"])) <= 1e-5, path
        same = ("verdict", "generator", "width", "height", "format", "provenance", "model_sha256")
        for key in same:
            assert a[key] == b[key], (path, key)


def test_ray_gives_the_same_rows_as_the_local_engine(tmp_path, brightness_onnx, local_ray):
    data = bad_inputs_folder(tmp_path / "data")
    here, there = tmp_path / "local.csv", tmp_path / "ray.csv"
    run_scan(ScanOptions([data], brightness_onnx, csv=here, device="cpu"))
    result = run_scan(
        ScanOptions(
            [data], brightness_onnx, csv=there, engine="ray", ray=ray_options(), batch_size=3
        )
    )
    local, remote = rows(here), rows(there)
    assert len(local) == 15
    assert_same_rows(local, remote)
    assert remote[str(data / "gan" / "comfy.png")]["provenance"] == "png:comfyui"
    assert result.tallies.total().errors == 4 and result.scanned == 15


def test_an_interrupted_ray_scan_resumes_without_loss_or_duplicates(
    tmp_path, brightness_onnx, local_ray
):
    data = bad_inputs_folder(tmp_path / "data")
    out = tmp_path / "out.csv"
    options = ScanOptions(
        [data], brightness_onnx, csv=out, engine="ray", ray=ray_options(), batch_size=2
    )
    with pytest.raises(KeyboardInterrupt):
        run_scan(options, progress=StopAfter(5))
    assert len(rows(out)) == 5
    options.existing = "resume"
    result = run_scan(options)
    assert result.resumed == 5 and result.scanned == 10
    with open(out, newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert len(paths) == len(set(paths)) == 15


def test_an_s3_scan_over_the_real_protocol(tmp_path, brightness_onnx, local_ray, s3_endpoint):
    import boto3

    data = bad_inputs_folder(tmp_path / "data")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_creds())
    s3.create_bucket(Bucket="uploads")
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        s3.upload_file(str(path), "uploads", f"batch1/{path.relative_to(data).as_posix()}")
    s3.put_object(Bucket="uploads", Key="batch1/notes.txt", Body=b"not an image")
    here, there = tmp_path / "local.csv", tmp_path / "s3.csv"
    run_scan(ScanOptions([data], brightness_onnx, csv=here, device="cpu"))
    result = run_scan(  # engine "auto": a URI goes to Ray
        ScanOptions(["s3://uploads/batch1"], brightness_onnx, csv=there, ray=ray_options())
    )
    remote = rows(there)
    assert_same_rows(rows(here), remote, rename=lambda p: "s3://uploads/batch1/" + Path(
        p).relative_to(data).as_posix())  # fmt: skip
    assert result.ignored == 1
    assert remote["s3://uploads/batch1/gan/mj.jpg"]["provenance"] == "exif:Midjourney"
    with pytest.raises(DataError, match="folder not found"):
        run_scan(ScanOptions(["s3://uploads/nothing-here"], brightness_onnx, ray=ray_options()))
    with pytest.raises(DataError, match="--engine ray"):
        run_scan(ScanOptions(["s3://uploads/batch1"], brightness_onnx, engine="local"))


def _boto_creds() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def test_cli_engine_ray(tmp_path, brightness_onnx, local_ray):
    data = bad_inputs_folder(tmp_path / "data")
    out = tmp_path / "cli.csv"
    args = ["scan", str(data), "-m", str(brightness_onnx), "--engine", "ray", "--workers", "1"]
    done = CliRunner().invoke(app, [*args, "--csv", str(out), "-q"])
    assert done.exit_code == 0, done.output
    assert len(rows(out)) == 15 and "gan" in done.stdout


def test_without_the_extra_ray_exits_3_with_the_hint(tmp_path, brightness_onnx, monkeypatch):
    def missing(module: str) -> None:
        raise MissingExtra(f"--engine ray needs {module}", hint='pip install "dfscan[ray]"')

    monkeypatch.setattr(engine_ray, "require", missing)
    write_image(tmp_path / "d" / "a.png", grey(9))
    out = tmp_path / "o.csv"
    args = ["scan", str(tmp_path / "d"), "-m", str(brightness_onnx), "--engine", "ray"]
    done = CliRunner().invoke(app, [*args, "--csv", str(out)])
    # (the CLI edge prints hints as Rich markup, which eats "[ray]": see the report)
    assert done.exit_code == 3 and "pip install" in done.output
    with pytest.raises(MissingExtra) as info:
        monkeypatch.undo()
        require("dfscan_no_such_module")
    assert info.value.exit_code == 3 and info.value.hint == 'pip install "dfscan[ray]"'
    assert not out.exists()  # refused before any report was opened


def test_bench_engine_ray(tmp_path, local_ray):
    from ..onnx_models import brightness_meta, brightness_model

    model = brightness_model(tmp_path / "m.onnx", brightness_meta(size=32))
    out = tmp_path / "bench.json"
    args = ["bench", "-m", str(model), "--smoke", "--device", "cpu", "--engine", "ray"]
    done = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert done.exit_code == 0, done.output
    import json

    ray_rows = json.loads(out.read_text())["ray"]
    assert [r["workers"] for r in ray_rows] == [1, 2]
    assert all(r["images"] == 4 and r["images_per_s"] > 0 for r in ray_rows)
    assert "Ray engine scan" in done.output


def test_an_actor_sends_a_failure_back_to_be_raised_as_itself(tmp_path, brightness_onnx):
    """In-process (no cluster): a file's outcome comes back as a record of Scored's fields; an
    exception from scoring or from loading the model comes back as itself, with its exit code."""
    image = write_image(tmp_path / "a.png", grey(51))
    batch = {"item": [json.dumps(asdict(Found(str(image), "g")))]}
    actor = engine_ray.ScoreActor(brightness_onnx.read_bytes(), "cpu", 1, provenance=False)
    (record,) = actor(batch)["record"]
    assert engine_ray.received(record).p_fake == pytest.approx(0.2, abs=1e-6)

    def broken(images):
        raise RuntimeError("the scorer broke")

    actor.detector.run = broken
    with pytest.raises(RuntimeError, match="the scorer broke") as info:
        engine_ray.received(actor(batch)["record"][0])
    notes = getattr(info.value, "__notes__", ["raised in a Ray actor: in broken"])
    assert "raised in a Ray actor" in notes[0] and "in broken" in notes[0]  # the traceback
    unloadable = engine_ray.ScoreActor(b"not a model", "cpu", 1, provenance=False)
    with pytest.raises(ModelError) as model_info:
        engine_ray.received(unloadable(batch)["record"][0])
    assert model_info.value.exit_code == ExitCode.MODEL


def test_a_bug_stops_a_ray_scan_as_it_stops_a_local_one(
    tmp_path, brightness_onnx, local_ray, monkeypatch, capsys
):
    """The scorer raising RuntimeError (in every actor, and in the local engine's detector):
    no rows, and the CLI exits 70 with the same line, naming the exception itself."""
    monkeypatch.setenv("DFSCAN_DEBUG", "0")
    data = tmp_path / "data"
    for i in range(3):
        write_image(data / f"{i}.png", grey(i))

    class BrokenScorer(engine_ray.ScoreActor):  # sent to the actors by value (a local class)
        @staticmethod
        def _load(model, device, threads):
            detector = engine_ray.ScoreActor._load(model, device, threads)

            def broken(images):
                raise RuntimeError("the scorer broke")

            detector.run = broken
            return detector

    monkeypatch.setattr(engine_ray, "ScoreActor", BrokenScorer)

    def broken_run(self, images):  # the local engine's detector (the driver's process)
        raise RuntimeError("the scorer broke")

    monkeypatch.setattr(Detector, "run", broken_run)
    said = {}
    for engine in ("local", "ray"):
        args = ["scan", str(data), "-m", str(brightness_onnx), "--engine", engine]
        out = tmp_path / f"{engine}.csv"
        code = _run_main(monkeypatch, *args, "--workers", "1", "--csv", str(out))
        lines = capsys.readouterr().err.splitlines()
        said[engine] = code, [line for line in lines if line.startswith(("error:", "hint:"))]
        assert rows(out) == {}, engine  # no error rows
    assert said["ray"] == said["local"]
    assert said["local"][0] == EXIT_BUG
    assert said["local"][1][0] == "error: internal error (a bug): RuntimeError: the scorer broke"

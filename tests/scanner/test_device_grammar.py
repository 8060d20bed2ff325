"""One device grammar (``auto``, ``cpu``, ``cuda``, ``cuda:N``) for the runtime, the training
code and every command's ``--device``: ``runtime.parse_device`` is the only parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.cli.support import device_value
from dfscan.scanner.errors import DeviceError, ExitCode
from dfscan.scanner.model import runtime
from dfscan.scanner.model.runtime import parse_device

from ..conftest import write_image

runner = CliRunner()

VALID = {"auto": ("auto", 0), "cpu": ("cpu", 0), "cuda": ("cuda", 0), "cuda:0": ("cuda", 0)}
VALID |= {"cuda:1": ("cuda", 1), "cuda:12": ("cuda", 12)}
INVALID = ["gpu", "", "cuda:", "cuda:x", "cpu:1", "auto:0", "CUDA", " cuda", "cuda:-1", "cuda:²"]


@pytest.mark.parametrize(("text", "parsed"), VALID.items())
def test_the_grammar_accepts(text: str, parsed: tuple[str, int]):
    assert parse_device(text) == parsed
    assert device_value(text) == text  # the option keeps the user's string


@pytest.mark.parametrize("text", INVALID)
def test_the_grammar_refuses(text: str):
    with pytest.raises(DeviceError, match="unknown device"):
        parse_device(text)


def test_training_resolves_devices_with_the_same_grammar(monkeypatch):
    pytest.importorskip("torch")
    from dfscan.train.fit import predict

    assert str(predict.resolve_device("cpu")) == "cpu"
    for text in INVALID:
        with pytest.raises(DeviceError, match="unknown device"):
            predict.resolve_device(text)
    seen = []
    monkeypatch.setattr(runtime, "parse_device", lambda d: seen.append(d) or ("cpu", 0))
    predict.resolve_device("cuda:3")
    assert seen == ["cuda:3"]  # the scanner's parser, not a copy


# ``dfscan export`` has no --device option (it exports on the CPU); bench still takes the old
# auto/cpu/cuda choice (bench_cli.py is edited elsewhere) and refuses gpu all the same.
COMMANDS = {
    "scan": ["scan", "folder"],
    "calibrate": ["calibrate", "--reals", "r", "--out", "o.onnx"],
    "serve": ["serve"],
    "bench": ["bench", "-m", "m.onnx"],
    "train": ["train", "data"],
    "evaluate": ["evaluate", "m.ckpt", "data"],
    "explain": ["explain", "x.png", "-c", "m.ckpt", "-o", "out"],
    "experiments": ["experiments", "data"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_device_is_a_usage_error(command: str):
    if command in ("train", "evaluate", "explain", "experiments"):
        pytest.importorskip("dfscan.train.cli")
    result = runner.invoke(app, [*COMMANDS[command], "--device", "gpu"])
    assert result.exit_code == ExitCode.USAGE == 2, result.output
    output = " ".join(result.output.replace("│", " ").split())  # the error box's lines joined
    assert "Invalid value for '--device'" in output
    if command != "bench":
        assert "unknown device 'gpu'; choose from auto, cpu, cuda or cuda:N" in output
    assert "Traceback" not in output


@pytest.fixture
def no_gpu(monkeypatch) -> list[int]:
    """A CUDA provider that is listed but finds no GPU: records the device ids asked for."""
    asked: list[int] = []

    def no_session(path, threads, device_id):
        asked.append(device_id)
        return None, f"there is no GPU {device_id} (test)"

    monkeypatch.setattr(runtime, "_cuda_session", no_session)
    return asked


def _reals(root: Path) -> Path:
    for i, v in enumerate((40, 90, 160, 220)):
        write_image(root / "real" / f"r{i}.png", np.full((16, 16, 3), v, np.uint8))
    return root


def test_scan_takes_cuda_n_to_the_runtime(no_gpu, brightness_onnx: Path, tmp_path: Path):
    data = _reals(tmp_path / "data")
    args = ["scan", str(data), "-m", str(brightness_onnx), "-q", "--device", "cuda:1"]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.DEVICE == 5, result.output
    assert "CUDA is not available: there is no GPU 1 (test)" in " ".join(result.output.split())
    assert no_gpu == [1]
    auto = runner.invoke(app, [*args[:-1], "auto", "--csv", str(tmp_path / "r.csv")])
    assert auto.exit_code == 0, auto.output  # auto falls back to the CPU
    assert no_gpu == [1, 0]


def test_calibrate_takes_cuda_n_to_the_runtime(no_gpu, brightness_onnx: Path, tmp_path: Path):
    reals = _reals(tmp_path / "data")
    out = tmp_path / "calibrated.onnx"
    args = ["calibrate", str(brightness_onnx), "--reals", str(reals), "--out", str(out)]
    result = runner.invoke(app, [*args, "-q", "--device", "cuda:2"])
    assert result.exit_code == ExitCode.DEVICE, result.output
    assert no_gpu == [2] and not out.exists()


def test_serve_takes_cuda_n_to_the_runtime(no_gpu, brightness_onnx: Path):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("multipart")
    result = runner.invoke(app, ["serve", "-m", str(brightness_onnx), "--device", "cuda:1"])
    assert result.exit_code == ExitCode.DEVICE, result.output  # before any server starts
    assert no_gpu == [1]


def test_training_commands_accept_cuda_n():
    pytest.importorskip("torch")  # the training commands run only with the [train] extra
    shown = runner.invoke(app, ["experiments", "--device", "cuda:1", "--show-grid"])
    assert shown.exit_code == 0, shown.output
    train = runner.invoke(app, ["train", "--device", "cuda:1"])  # parsed, then: no DATA
    assert train.exit_code == ExitCode.INPUT and "missing DATA" in train.output

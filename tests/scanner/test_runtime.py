"""Devices: CUDA failures fall back to the CPU with one warning under ``auto`` and exit 5 under
``cuda``, in the scanner (ONNX Runtime) and in the torch commands alike.

No GPU is needed: each way CUDA fails is simulated where ONNX Runtime or torch reports it (the
provider list, the provider library, session creation, the first batch), around real CPU
sessions of the brightness test model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.scanner.errors import DeviceError, ModelError
from dfscan.scanner.model import runtime
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.runtime import CPU, CUDA, open_session, parse_device

from ..onnx_models import grey

runner = CliRunner()
real_create = runtime._create


class FakeCudaSession:
    """A real CPU session that claims to run on CUDA; ``fail_run(batch)`` decides which runs
    raise, as a CUDA kernel failure would."""

    def __init__(self, session, fail_run=lambda batch: False) -> None:
        self._session = session
        self._fail_run = fail_run
        self.runs: list[int] = []

    def get_providers(self):
        return [CUDA, CPU]

    def run(self, outputs, feed):
        batch = len(next(iter(feed.values())))
        self.runs.append(batch)
        if self._fail_run(batch):
            raise RuntimeError("CUDA failure 2: out of memory\n(a long ONNX Runtime trace)")
        return self._session.run(outputs, feed)

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.fixture
def cuda_listed(monkeypatch):
    """ONNX Runtime lists the CUDA provider and its library loads; ``creates`` records every
    session's providers. Tests replace ``state["create"]`` to make CUDA fail their way."""
    state: dict = {"creates": []}

    def create(model, providers, threads, optimize):
        state["creates"].append((list(providers), threads))
        names = [p if isinstance(p, str) else p[0] for p in providers]
        cpu = real_create(model, [CPU], threads, optimize)
        if CUDA not in names:
            return cpu
        return state["create"](cpu)

    state["create"] = FakeCudaSession  # default: CUDA works
    monkeypatch.setattr(runtime, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(runtime, "cuda_library_problem", lambda: None)
    monkeypatch.setattr(runtime, "_preload_cuda_libraries", lambda: None)
    monkeypatch.setattr(runtime, "_create", create)
    return state


def test_a_cuda_session_that_fails_to_create_falls_back_with_the_reason(
    cuda_listed, brightness_onnx: Path
):
    def refuse(cpu):
        raise RuntimeError("CUDA error 100: no CUDA-capable device is detected\nstack...")

    cuda_listed["create"] = refuse
    opened = open_session(brightness_onnx, "auto")
    assert opened.provider == CPU
    assert opened.warning == (
        "CUDA unavailable (the CUDA session could not be created: CUDA error 100: no "
        "CUDA-capable device is detected); running on CPU"
    )
    with pytest.raises(DeviceError, match="CUDA is not available: the CUDA session could not be"):
        open_session(brightness_onnx, "cuda")


def test_scan_under_auto_falls_back_with_one_warning_not_exit_4(
    cuda_listed, brightness_onnx: Path, tmp_path: Path
):
    from dfscan.scanner.cli.app import app

    from ..conftest import write_image

    def refuse(cpu):
        raise RuntimeError("CUDA error 100: no CUDA-capable device is detected")

    cuda_listed["create"] = refuse
    for i, v in enumerate((10, 240)):
        write_image(tmp_path / "data" / "real" / f"r{i}.png", grey(v))
    args = ["scan", str(tmp_path / "data"), "-m", str(brightness_onnx)]
    result = runner.invoke(app, [*args, "--csv", str(tmp_path / "r.csv"), "--device", "auto"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert output.count("CUDA unavailable (the CUDA session could not be created: CUDA") == 1
    assert "not a usable ONNX model" not in output
    cuda = runner.invoke(app, [*args, "--device", "cuda"])
    assert cuda.exit_code == 5, cuda.output


def test_a_broken_model_is_still_a_model_error_when_cuda_is_tried(cuda_listed, tmp_path: Path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01not protobuf" * 4)
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        open_session(bad, "auto")


def test_a_cuda_provider_that_silently_did_not_start_is_named(cuda_listed, brightness_onnx):
    cuda_listed["create"] = lambda cpu: cpu  # ONNX Runtime dropped CUDA and used the CPU
    opened = open_session(brightness_onnx, "auto")
    assert opened.provider == CPU and "the CUDA provider did not start" in opened.warning
    with pytest.raises(DeviceError, match="did not start"):
        open_session(brightness_onnx, "cuda")


def test_a_cuda_session_whose_first_batch_fails_falls_back(cuda_listed, brightness_onnx):
    cuda_listed["create"] = lambda cpu: FakeCudaSession(cpu, fail_run=lambda batch: True)
    detector = Detector.from_onnx(brightness_onnx, "auto")
    assert detector.provider == CPU
    assert detector.warning == (
        "CUDA unavailable (the first batch failed on CUDA: CUDA failure 2: out of memory); "
        "running on CPU"
    )
    np.testing.assert_allclose(detector.predict([grey(51)]), [0.2], atol=1e-6)
    with pytest.raises(DeviceError, match="first batch failed on CUDA"):
        Detector.from_onnx(brightness_onnx, "cuda")


def test_the_first_real_batch_failing_on_cuda_reruns_on_the_cpu(cuda_listed, brightness_onnx):
    fakes: list[FakeCudaSession] = []

    def fails_on_big_batches(cpu):  # the start-up probe (one image) passes, a real batch not
        fakes.append(FakeCudaSession(cpu, fail_run=lambda batch: batch > 1))
        return fakes[-1]

    cuda_listed["create"] = fails_on_big_batches
    warnings: list[str] = []
    detector = Detector.from_onnx(brightness_onnx, "auto", notify=warnings.append)
    assert detector.provider == CUDA and detector.warning is None
    p = detector.predict([grey(0), grey(51), grey(255)])
    np.testing.assert_allclose(p, [0.0, 0.2, 1.0], atol=1e-6)
    assert detector.provider == CPU and fakes[0].runs == [1, 3]
    assert warnings == [
        "CUDA failed on the first batch (CUDA failure 2: out of memory); running on CPU"
    ]
    assert detector.warning == warnings[0]
    np.testing.assert_allclose(detector.predict([grey(102)] * 2), [0.4, 0.4], atol=1e-6)
    assert len(warnings) == 1  # one warning, not one per batch


def test_without_notify_the_fallback_is_a_python_warning(cuda_listed, brightness_onnx):
    cuda_listed["create"] = lambda cpu: FakeCudaSession(cpu, fail_run=lambda batch: batch > 1)
    detector = Detector.from_onnx(brightness_onnx, "auto")
    with pytest.warns(RuntimeWarning, match="CUDA failed on the first batch"):
        detector.predict([grey(0), grey(51)])


def test_a_failure_after_a_working_batch_is_not_a_device_fallback(cuda_listed, brightness_onnx):
    calls = {"n": 0}

    def fail_later(batch: int) -> bool:
        calls["n"] += 1
        return calls["n"] > 2  # probe and first real batch pass, then a failure

    cuda_listed["create"] = lambda cpu: FakeCudaSession(cpu, fail_run=fail_later)
    detector = Detector.from_onnx(brightness_onnx, "auto")
    detector.predict([grey(0)])
    with pytest.raises(ModelError, match="inference failed"):
        detector.predict([grey(0)])
    assert detector.provider == CUDA


def test_cuda_request_never_falls_back(cuda_listed, brightness_onnx):
    cuda_listed["create"] = lambda cpu: FakeCudaSession(cpu, fail_run=lambda batch: batch > 1)
    detector = Detector.from_onnx(brightness_onnx, "cuda")
    with pytest.raises(ModelError, match="inference failed"):
        detector.predict([grey(0), grey(51)])


def test_provider_options_and_threads_pass_through(cuda_listed, brightness_onnx):
    Detector.from_onnx(brightness_onnx, "auto", threads=3, device_id=1)
    open_session(brightness_onnx, "cuda:2")
    creates = cuda_listed["creates"]
    assert creates[0] == ([(CUDA, {"device_id": "1"}), CPU], 3)
    assert any(p == [(CUDA, {"device_id": "2"}), CPU] for p, _ in creates)
    cpu = Detector.from_onnx(brightness_onnx, "cpu", threads=3)
    assert cpu.session.get_session_options().intra_op_num_threads == 3


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:1", ""])
def test_unknown_devices_exit_5(device: str):
    with pytest.raises(DeviceError, match="unknown device") as err:
        parse_device(device)
    assert err.value.exit_code == 5


def test_a_missing_cuda_library_is_named_without_asking_onnx_runtime(monkeypatch, tmp_path):
    library = tmp_path / "libonnxruntime_providers_cuda.so"
    library.write_bytes(b"")
    monkeypatch.setattr(runtime, "cuda_provider_library", lambda: library)

    def dlopen(path):
        raise OSError("libcudnn.so.9: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(runtime.ctypes, "CDLL", dlopen)
    assert runtime.cuda_library_problem() == "libcudnn.so.9 could not be loaded"

    def no_driver(path):
        raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(runtime.ctypes, "CDLL", no_driver)
    assert runtime.cuda_library_problem() == "libcuda.so.1 could not be loaded (the NVIDIA driver)"

    def other(path):
        raise OSError(f"{path}: undefined symbol: Provider_GetHost")

    monkeypatch.setattr(runtime.ctypes, "CDLL", other)
    assert runtime.cuda_library_problem() is None  # not a verdict: ONNX Runtime decides


def test_auto_on_this_machine_writes_nothing_to_the_process_streams(brightness_onnx: Path, capfd):
    """The real path, whatever this machine has: no fd redirection, no ONNX Runtime banner."""

    redirected: list[tuple] = []
    real_dup2 = os.dup2

    def dup2(*args, **kwargs):  # spy only: pytest's own capture needs the real one
        redirected.append(args)
        return real_dup2(*args, **kwargs)

    stdout, stderr = sys.stdout, sys.stderr
    os.dup2 = dup2
    try:
        opened = open_session(brightness_onnx, "auto")
    finally:
        os.dup2 = real_dup2
    assert not redirected and sys.stdout is stdout and sys.stderr is stderr
    out, err = capfd.readouterr()
    if opened.provider == CPU:
        assert opened.warning and opened.warning.startswith("CUDA unavailable (")
        assert out == "" and err == "", (out, err)


# --- torch commands -------------------------------------------------------------------------


def _no_torch_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA works here")


def test_resolve_device_cuda_without_cuda_is_a_device_error(monkeypatch):
    torch = pytest.importorskip("torch")
    from dfscan.train.fit.predict import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="CUDA is not available") as err:
        resolve_device("cuda")
    assert err.value.exit_code == 5
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


def test_resolve_device_with_a_gpu_torch_cannot_use(monkeypatch):
    torch = pytest.importorskip("torch")
    from dfscan.train.fit.predict import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    real_zeros = torch.zeros

    def zeros(*args, device=None, **kwargs):
        if device is not None and torch.device(device).type == "cuda":
            raise RuntimeError("CUDA error: no kernel image is available\nmore")
        return real_zeros(*args, device=device, **kwargs)

    monkeypatch.setattr(torch, "zeros", zeros)
    with pytest.raises(DeviceError, match="a first tensor failed on cuda:0: CUDA error: no kernel"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="there is no GPU 3"):
        resolve_device("cuda:3")
    with pytest.warns(RuntimeWarning, match="CUDA unavailable"):
        assert resolve_device("auto") == torch.device("cpu")


def _one_line_exit_5(result) -> None:
    assert result.exit_code == 5, result.output
    assert "CUDA is not available" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_train_and_explain_with_cuda_unavailable_exit_5(tiny_dataset: Path, tmp_path: Path):
    _no_torch_cuda()
    from dfscan.scanner.cli.app import app
    from tests.export.test_export import random_checkpoint

    train = ["train", str(tiny_dataset), "--out", str(tmp_path / "run"), "--arch"]
    train += ["efficientnet_lite0", "--weights", "none", "--size", "32", "--epochs", "1"]
    _one_line_exit_5(runner.invoke(app, [*train, "--device", "cuda"]))
    ckpt = random_checkpoint(tmp_path / "m.ckpt", "efficientnet_lite0", "spatial")
    image = next((tiny_dataset / "real").iterdir())
    explain = ["explain", str(image), "-c", str(ckpt), "-o", str(tmp_path / "cams")]
    _one_line_exit_5(runner.invoke(app, [*explain, "--device", "cuda"]))
    evaluate = ["evaluate", str(ckpt), str(tiny_dataset), "--split", "all"]
    _one_line_exit_5(runner.invoke(app, [*evaluate, "--device", "cuda"]))

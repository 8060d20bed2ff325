"""ONNX Runtime sessions: providers picked from what actually works, threads set for the machine.

``auto`` tries CUDA and falls back to the CPU with one warning that says why; ``cuda`` fails
(``DeviceError``, exit 5) when CUDA cannot be used. A CUDA session counts as working once it
has been created on the CUDA provider *and* has run a first batch: a missing library, a
missing driver, a provider that raises while the session is created and a kernel that fails on
the first run are all the device's fault, reported as such, never as an unusable model.

Nothing redirects the process's stdout/stderr. ONNX Runtime's own switches keep it quiet:
sessions log errors only (``log_severity_level``), its Python-level provider fallback (which
prints a banner to stdout) is turned off (``enable_fallback=0``) because we do our own, and
the CUDA provider library is probed with ``dlopen`` first, which names a missing library
without ONNX Runtime logging it. When the library loads but the provider still fails, ONNX
Runtime's default logger is set to errors only (``set_default_logger_severity(3)``) so its
warnings are replaced by ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import DeviceError, ModelError, first_line

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")
_DEVICE_NAMES: dict[str, Device] = {name: name for name in DEVICES}
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def available_cores() -> int:
    """Cores this process may use (respects taskset/cgroup affinity, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def session_options(threads: int | None = None, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or available_cores()
    so.inter_op_num_threads = 1
    # Idle ORT threads sleep instead of spinning: the scanner decodes images on the same cores
    # between runs (ONNX Runtime's advice when its threads share the CPU with other work).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only; warnings about fallbacks are ours to give
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return so


ProviderSpec = str | tuple[str, dict[str, Any]]
ORT_LOG_ERRORS = 3  # ONNX Runtime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")


def _create(model: Path | bytes, providers: Sequence[ProviderSpec], threads, optimize: bool):
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source,
        session_options(threads, optimize),
        providers=list(providers),
        enable_fallback=0,  # no retry banner on stdout: open_session does its own fallback
    )


def load_session(
    path: Path, providers: Sequence[ProviderSpec], threads: int | None = None, optimize: bool = True
):
    """An InferenceSession, or a ModelError that says what is wrong with the file."""
    _check_file(path)
    try:
        return _create(path, providers, threads, optimize)
    except Exception as exc:  # ORT raises its own pybind exception types
        raise ModelError(
            f"{path} is not a usable ONNX model: {first_line(exc)}",
            hint="pass an .onnx file written by dfscan export",
        ) from None


def session_from_bytes(model: bytes, providers: Sequence[ProviderSpec], threads: int | None = None):
    """A session on an in-memory graph (export checks); errors are ONNX Runtime's own."""
    return _create(model, providers, threads, True)


@dataclass
class OpenedSession:
    session: object  # onnxruntime.InferenceSession
    provider: str
    warning: str | None = None


def first_batch(session: Any) -> None:
    """Run one all-zero batch (dynamic dimensions = 1): proves the provider's kernels run."""
    import numpy as np

    dtypes = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16}
    feed = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feed[inp.name] = np.zeros(shape, dtype=dtypes.get(inp.type, np.float32))
    session.run(None, feed)


_DEVICE = re.compile(r"(?P<name>auto|cpu|cuda)|cuda:(?P<index>[0-9]+)")


def parse_device(device: str) -> tuple[Device, int]:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` → (device, CUDA device id).

    The one device grammar of dfscan: the runtime, ``dfscan.train`` (torch devices) and every
    command's ``--device`` (:class:`dfscan.scanner.cli.support.DeviceType`) parse with it.
    """
    match = _DEVICE.fullmatch(str(device))
    if match is None:
        choices = ", ".join(DEVICES)
        raise DeviceError(f"unknown device {device!r}; choose from {choices} or cuda:N")
    if match["index"] is not None:
        return "cuda", int(match["index"])
    return _DEVICE_NAMES[match["name"]], 0


def open_session(
    path: Path,
    device: Device | str = "auto",
    threads: int | None = None,
    device_id: int | None = None,
) -> OpenedSession:
    """A session on the requested device; ``auto`` = CUDA when it works, else CPU + warning.

    ``threads`` sets ONNX Runtime's intra-op threads (default: the cores this process may use);
    ``device_id`` (or ``device="cuda:N"``) picks the GPU. A file that no provider can load is
    a ``ModelError``; CUDA that cannot be used is a ``DeviceError`` under ``cuda``.
    """
    name, index = parse_device(str(device))
    index = index if device_id is None else device_id
    if name == "cpu":
        return OpenedSession(load_session(path, [CPU], threads), CPU)
    _check_file(path)
    session, reason = _cuda_session(path, threads, index)
    if session is not None:
        return OpenedSession(session, CUDA)
    if name == "cuda":
        raise DeviceError(f"CUDA is not available: {reason}", hint="use --device cpu or auto")
    cpu = load_session(path, [CPU], threads)
    return OpenedSession(cpu, CPU, f"CUDA unavailable ({reason}); running on CPU")


def _cuda_session(path: Path, threads: int | None, device_id: int) -> tuple[Any, str]:
    """(a session that ran a first batch on CUDA, "") or (None, why CUDA cannot be used)."""
    if CUDA not in available_providers():
        return None, "this onnxruntime build has no CUDA provider (pip install onnxruntime-gpu)"
    _preload_cuda_libraries()
    missing = cuda_library_problem()
    if missing:
        return None, missing
    import onnxruntime as ort

    ort.set_default_logger_severity(ORT_LOG_ERRORS)
    providers: list[str | tuple[str, dict[str, Any]]] = [(CUDA, {"device_id": str(device_id)}), CPU]
    try:
        session = _create(path, providers, threads, True)
    except Exception as exc:
        load_session(path, [CPU], threads, optimize=False)  # the file's fault: ModelError
        return None, f"the CUDA session could not be created: {first_line(exc)}"
    if session.get_providers()[0] != CUDA:
        return None, "the CUDA provider did not start (no usable GPU or driver)"
    try:
        first_batch(session)
    except Exception as exc:
        return None, f"the first batch failed on CUDA: {first_line(exc)}"
    return session, ""


def cuda_provider_library() -> Path:
    import onnxruntime as ort

    return Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"


def cuda_library_problem() -> str | None:
    """Which shared library the CUDA provider lacks, found by loading it ourselves.

    ONNX Runtime would log the same failure to stderr; ``dlopen`` reports it as an exception.
    Only a missing file is a verdict: other load errors (symbols ONNX Runtime provides when it
    loads the library itself) are left for ONNX Runtime to decide.
    """
    library = cuda_provider_library()
    if os.name != "posix" or not library.exists():
        return None
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        match = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", str(exc))
        if match:
            lib = match.group(1)
            what = " (the NVIDIA driver)" if lib.startswith("libcuda.so") else ""
            return f"{lib} could not be loaded{what}"
    return None


def _preload_cuda_libraries() -> None:
    """Let ORT find CUDA/cuDNN from the nvidia-* wheels (e.g. installed with PyTorch)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):
            preload()

"""ONNX Runtime sessions: providers picked from what actually works, threads set for the machine.

``auto`` tries CUDA and falls back to the CPU with one warning that says why; ``cuda`` fails
when CUDA cannot be used. ONNX Runtime writes provider failures straight to the process's
stderr from C++, so they are captured at the file-descriptor level and turned into that one
warning instead of a screenful of log.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dfscan.scanner.errors import DeviceError, ModelError, first_line

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")
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


def load_session(
    path: Path, providers: Sequence[str], threads: int | None = None, optimize: bool = True
):
    """An InferenceSession, or a ModelError that says what is wrong with the file."""
    import onnxruntime as ort

    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        return ort.InferenceSession(
            str(path), session_options(threads, optimize), providers=list(providers)
        )
    except Exception as exc:  # ORT raises its own pybind exception types
        raise ModelError(
            f"{path} is not a usable ONNX model: {first_line(exc)}",
            hint="pass an .onnx file written by dfscan export",
        ) from None


@dataclass
class OpenedSession:
    session: object  # onnxruntime.InferenceSession
    provider: str
    warning: str | None = None


@contextlib.contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """Collect what C++ code (and Python) writes to stdout/stderr inside the block."""
    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as tmp:
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            with contextlib.redirect_stdout(io.StringIO()) as out:
                yield lines
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace") + out.getvalue()
            lines.extend(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines())


def cuda_failure_reason(log: Sequence[str]) -> str:
    """The most useful phrase of ONNX Runtime's CUDA start-up log."""
    for line in log:
        match = re.search(r"with error: (.+?)(?:: cannot open shared object file.*)?$", line)
        if match:
            return f"{match.group(1).strip()} could not be loaded"
    for line in log:
        if "Require cuDNN" in line or "Failed to create CUDAExecutionProvider" in line:
            return "the CUDA/cuDNN libraries or the GPU driver are missing"
    return "the CUDA provider did not start"


def open_session(path: Path, device: Device = "auto", threads: int | None = None) -> OpenedSession:
    """A session on the requested device; ``auto`` = CUDA when it works, else CPU + warning."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "cpu":
        return OpenedSession(load_session(path, [CPU], threads), CPU)
    if CUDA not in available_providers():
        reason = "this onnxruntime build has no CUDA provider (pip install onnxruntime-gpu)"
        session = None
    else:
        with _native_output_captured() as log:
            _preload_cuda_libraries()
            session = load_session(path, [CUDA, CPU], threads)
        if session.get_providers()[0] == CUDA:
            return OpenedSession(session, CUDA)
        reason = cuda_failure_reason(log)
    if device == "cuda":
        raise DeviceError(f"CUDA is not available: {reason}", hint="use --device cpu or auto")
    session = session or load_session(path, [CPU], threads)
    return OpenedSession(session, CPU, f"CUDA unavailable ({reason}); running on CPU")


def _preload_cuda_libraries() -> None:
    """Let ORT find CUDA/cuDNN from the nvidia-* wheels (e.g. installed with PyTorch)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):
            preload()

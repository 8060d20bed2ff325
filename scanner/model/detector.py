"""A dfscan ONNX model behind one small API: ``Detector.from_onnx(path).predict(images)``.

Preprocessing comes from the model's own metadata through the shared definition in
:mod:`dfscan.scanner.model.preprocess`, so training, export checks and scanning feed identical
pixels.
The graph's input and output names and the input dtype are read from the session (the file is
the contract, see :mod:`dfscan.scanner.model.meta`), and checked once, here, so a foreign or
mismatched model fails at load time with a clear message rather than on the first batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from ..errors import DataError, ModelError, first_line
from ..labels import FAKE
from .meta import OUTPUT_LOGITS, OUTPUT_P_FAKE, ModelMeta, meta_from_session
from .preprocess import load_image, prepare, to_rgb
from .runtime import CPU, CUDA, Device, open_session, parse_device

ImageLike = Union[str, Path, Image.Image, np.ndarray]  # noqa: UP007 (a runtime alias)

_INPUT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


@dataclass(frozen=True)
class _Graph:
    """The parts of the session's signature the detector relies on."""

    input_name: str
    input_dtype: type[np.generic]
    fixed_batch: int | None  # a graph exported with a static batch dimension
    output_name: str
    output_is_logits: bool  # no p_fake output: softmax over logits
    fake_index: int


def _inspect(session: Any, meta: ModelMeta, source: str) -> _Graph:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{source} has {len(inputs)} inputs; a dfscan model has one")
    inp = inputs[0]
    if inp.type not in _INPUT_DTYPES:
        raise ModelError(f"{source}: input {inp.name!r} is {inp.type}; expected uint8 or float")
    shape = list(inp.shape)
    expected = [None, 3, meta.size, meta.size]
    if len(shape) != 4 or any(
        isinstance(dim, int) and want is not None and dim != want
        for dim, want in zip(shape, expected, strict=False)
    ):
        raise ModelError(
            f"{source}: input shape {shape} does not match the metadata's "
            f"(N, 3, {meta.size}, {meta.size})"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    if OUTPUT_P_FAKE in outputs:
        output_name, is_logits = OUTPUT_P_FAKE, False
    elif OUTPUT_LOGITS in outputs:
        output_name, is_logits = OUTPUT_LOGITS, True
    else:
        raise ModelError(
            f"{source} has no {OUTPUT_P_FAKE!r} or {OUTPUT_LOGITS!r} output "
            f"(outputs: {', '.join(outputs) or 'none'})"
        )
    if FAKE not in meta.classes:
        raise ModelError(f"{source}: classes {list(meta.classes)} have no {FAKE!r} class")
    return _Graph(
        input_name=inp.name,
        input_dtype=_INPUT_DTYPES[inp.type],
        fixed_batch=shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None,
        output_name=output_name,
        output_is_logits=is_logits,
        fake_index=meta.classes.index(FAKE),
    )


def _array_to_image(arr: np.ndarray) -> Image.Image:
    """An HWC (or HW greyscale) uint8 array as a Pillow image."""
    if arr.dtype != np.uint8:
        raise DataError(
            f"image arrays must be uint8 (0-255), got {arr.dtype}",
            hint="convert with (arr * 255).round().astype(np.uint8)",
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    return Image.fromarray(arr)


class Detector:
    """Scores images with a dfscan ONNX model: p_fake in [0, 1] per image."""

    def __init__(
        self,
        session: Any,
        meta: ModelMeta,
        provider: str,
        warning: str | None = None,
        source: str = "model",
    ) -> None:
        self.session = session
        self.meta = meta
        self.provider = provider
        self.warning = warning  # why it runs on the CPU although CUDA was wanted
        self.source = source
        self._graph = _inspect(session, meta, source)
        # under device="auto" on CUDA: how to reopen on the CPU if the first real batch fails
        self._cpu_fallback: Callable[[], Any] | None = None
        self._notify: Callable[[str], None] | None = None
        self._proven = False  # a batch has run: later failures are not the device's

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        device: Device | str = "auto",
        threads: int | None = None,
        device_id: int | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> Detector:
        """Load a model written by ``dfscan export``; ``ModelError``/``DeviceError`` if unusable.

        ``device``: ``auto`` (CUDA when it works, else the CPU with ``warning`` saying why),
        ``cpu``, ``cuda`` or ``cuda:N``; ``threads``: ONNX Runtime intra-op threads;
        ``device_id``: the GPU. Under ``auto``, a CUDA session whose first real batch fails
        (e.g. out of GPU memory at a larger batch than the start-up probe) is reopened on the
        CPU and the batch rerun; ``notify`` (default: ``warnings.warn``) gets the one warning.
        """
        path = Path(path)
        opened = open_session(path, device, threads, device_id)
        meta = meta_from_session(opened.session, str(path))
        detector = cls(opened.session, meta, opened.provider, opened.warning, str(path))
        detector._notify = notify
        if opened.provider == CUDA and parse_device(str(device))[0] == "auto":
            detector._cpu_fallback = lambda: open_session(path, "cpu", threads).session
        return detector

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def batch_size_hint(self) -> int | None:
        """The batch size the graph insists on, when it was exported with a fixed one."""
        return self._graph.fixed_batch

    def prepare(self, image: ImageLike) -> np.ndarray:
        """The model input for one image (path, Pillow image or uint8 array): HWC uint8."""
        if isinstance(image, np.ndarray):
            image = _array_to_image(image)
        if isinstance(image, Image.Image):
            cfg = self.meta.preprocess
            return prepare(to_rgb(image, cfg.alpha_background), cfg)
        return load_image(image, self.meta.preprocess)

    def run(self, prepared: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """p_fake (float64, shape (N,)) for prepared HWC uint8 arrays; NaN if the model says so."""
        batch = np.ascontiguousarray(np.asarray(prepared).transpose(0, 3, 1, 2))
        n = len(batch)
        fixed = self._graph.fixed_batch
        if fixed is None:
            return self._run_chunk(batch)
        parts = []
        for start in range(0, n, fixed):
            chunk = batch[start : start + fixed]
            pad = fixed - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            parts.append(self._run_chunk(chunk)[: fixed - pad])
        return np.concatenate(parts) if parts else np.empty(0)

    def _run_chunk(self, nchw: np.ndarray) -> np.ndarray:
        g = self._graph
        feed = nchw if g.input_dtype == np.uint8 else nchw.astype(g.input_dtype) / 255
        try:
            (out,) = self.session.run([g.output_name], {g.input_name: feed})
        except Exception as exc:  # ORT's own exception types
            if self._cpu_fallback is None or self._proven:
                raise ModelError(f"inference failed on {self.source}: {first_line(exc)}") from None
            self._fall_back_to_cpu(exc)
            return self._run_chunk(nchw)
        self._proven = True
        out = np.asarray(out, dtype=np.float64)
        if g.output_is_logits:
            out = out.reshape(len(nchw), -1)
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            return shifted[:, g.fake_index] / shifted.sum(axis=1)
        return out.reshape(len(nchw))

    def _fall_back_to_cpu(self, exc: BaseException) -> None:
        assert self._cpu_fallback is not None
        reopen, self._cpu_fallback = self._cpu_fallback, None
        self.session = reopen()
        self._graph = _inspect(self.session, self.meta, self.source)
        self.provider = CPU
        self.warning = f"CUDA failed on the first batch ({first_line(exc)}); running on CPU"
        if self._notify is not None:
            self._notify(self.warning)
        else:
            warnings.warn(self.warning, RuntimeWarning, stacklevel=4)

    def predict(self, images: Iterable[ImageLike], batch_size: int = 32) -> np.ndarray:
        """p_fake for each image, in order; an unreadable image raises ``DataError``.

        For folders, with error rows instead of exceptions, use ``dfscan.scanner.scan.run``.
        """
        if isinstance(images, (str, Path, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim < 4
        ):
            images = [images]  # one image given: still an array of one score
        scores: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        for image in images:
            pending.append(self.prepare(image))
            if len(pending) == batch_size:
                scores.append(self.run(pending))
                pending = []
        if pending:
            scores.append(self.run(pending))
        return np.concatenate(scores) if scores else np.empty(0)

    def is_fake(self, p_fake: float, threshold: float | None = None) -> bool:
        """The verdict at ``threshold`` (default: the model's calibrated one)."""
        return bool(p_fake >= (self.threshold if threshold is None else threshold))

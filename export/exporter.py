"""``dfscan export``: checkpoint → ONNX (+ TorchScript), with metadata and a parity check."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.labels import REAL_LABEL
from dfscan.scanner.model.meta import PRECISIONS, ModelMeta
from dfscan.train.models.checkpoint import load_checkpoint
from dfscan.train.models.detector import STAGES

from .check_images import ImageSet, bundled_photos, folder_images
from .graph_module import ExportedDetector, exportable
from .metadata import build_meta
from .onnx_writer import (
    OPSET,
    attach_metadata,
    export_onnx_proto,
    forbid_dft,
    save_onnx,
)
from .parity import ParityError, ParityReport, check_parity
from .precision import MatchedThreshold
from .settings import DEFAULTS, INPUT_DTYPES, InputDType

if TYPE_CHECKING:
    import onnx

    from dfscan.scanner.model.preprocess import PreprocessConfig
    from dfscan.train.models.checkpoint import LoadedCheckpoint


@dataclass
class ExportResult:
    onnx_path: Path
    onnx_bytes: int
    meta: ModelMeta
    seconds: float
    torchscript_path: Path | None = None
    torchscript_bytes: int | None = None
    parity: ParityReport | None = None
    int8_threshold: MatchedThreshold | None = None  # how the int8 graph's threshold was set

    def raise_for_parity(self) -> None:
        if self.parity is not None and not self.parity.passed:
            raise ParityError(
                f"parity check failed: {self.parity.failures()}",
                hint="the files were written for inspection; do not ship them",
            )


def ensure_writable(path: Path) -> None:
    """Fail before the slow part when the output cannot be written."""
    if path.is_dir():
        raise DfscanError(f"output path is a folder: {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_name(path.name + ".tmp")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DfscanError(f"cannot write {path}: {exc.strerror or exc}") from None


def export_checkpoint(
    checkpoint: str | Path,
    onnx_path: str | Path,
    torchscript_path: str | Path | None = None,
    precision: str = DEFAULTS.precision,
    calibration: str | Path | None = DEFAULTS.calibration,
    input_dtype: InputDType = DEFAULTS.input_dtype,
    check: bool = DEFAULTS.check,
    check_images: str | Path | None = DEFAULTS.check_images,
    check_limit: int = DEFAULTS.check_limit,
    calibration_limit: int = DEFAULTS.calibration_limit,
    int8_float_stages: tuple[str, ...] = DEFAULTS.int8_float_stages,
    ap_tolerance: float = DEFAULTS.ap_tolerance,
) -> ExportResult:
    """Write the ONNX graph (and TorchScript), optionally checked against the trained model
    (the defaults: :class:`~dfscan.export.settings.ExportSettings`).

    int8 graphs get their own threshold: the one at which they flag the same share of the
    calibration reals as the fp32 graph flags at the checkpoint's threshold (int8 shifts the
    scores; the checkpoint's threshold would give another false-positive rate). ``check``
    fails (``ParityError``, exit 6) on fp32 disagreement, and when fp16/int8 lose more than
    ``ap_tolerance`` AP on labelled check images.
    """
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    torchscript_path, calibration, check_images = (
        None if p is None else Path(p) for p in (torchscript_path, calibration, check_images)
    )
    check_arguments(precision, input_dtype, calibration, check_images, ap_tolerance)
    for path in (onnx_path, torchscript_path):
        if path is not None:
            ensure_writable(path)
    check_stages(int8_float_stages)

    loaded = load_checkpoint(checkpoint)
    graph = build_graph(
        loaded, precision, input_dtype, calibration, calibration_limit, int8_float_stages
    )
    result = ExportResult(onnx_path, save_onnx(graph.proto, onnx_path), graph.meta, 0.0)
    result.int8_threshold = graph.matched
    if torchscript_path is not None:
        result.torchscript_path = torchscript_path
        result.torchscript_bytes = _write_torchscript(loaded, graph, input_dtype, torchscript_path)
    if check:
        result.parity = check_parity(
            loaded.model,
            _images_to_check(check_images, graph.meta.preprocess, check_limit),
            onnx_path,
            precision,
            input_dtype,
            graph.module,
            torchscript_path,
            ap_tolerance=ap_tolerance,
        )
    result.seconds = time.perf_counter() - start
    return result


def check_arguments(
    precision: str,
    input_dtype: str,
    calibration: Path | None,
    check_images: Path | None,
    ap_tolerance: float,
) -> None:
    """Refuse bad export arguments before the checkpoint is loaded (the slow part)."""
    if precision not in PRECISIONS:
        raise DfscanError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if input_dtype not in INPUT_DTYPES:
        raise DfscanError(f"unknown input dtype {input_dtype!r}; choose from {INPUT_DTYPES}")
    if precision == "int8" and calibration is None:
        raise DataError(
            "int8 needs calibration images",
            hint="pass --calibration DIR, a folder of real photos like those you will scan",
        )
    if calibration is not None and not calibration.is_dir():
        raise DataError(f"calibration folder not found: {calibration}")
    if not 0 <= ap_tolerance <= 1:
        raise DfscanError(f"AP tolerance must be between 0 and 1, got {ap_tolerance}")
    if check_images is not None and not check_images.is_dir():
        raise DataError(f"check image folder not found: {check_images}")


def check_stages(int8_float_stages: tuple[str, ...]) -> None:
    """Every stage int8 is asked to keep in float must be a backbone stage."""
    unknown = sorted(set(int8_float_stages) - set(STAGES))
    if unknown:
        raise DfscanError(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")


@dataclass
class Graph:
    """The ONNX graph at its precision, with its metadata attached."""

    proto: onnx.ModelProto
    meta: ModelMeta
    module: ExportedDetector  # the fp32 module: TorchScript and the parity check use it
    matched: MatchedThreshold | None = None  # int8: how its threshold was set


def build_graph(
    loaded: LoadedCheckpoint,
    precision: str,
    input_dtype: InputDType,
    calibration: Path | None,
    calibration_limit: int,
    int8_float_stages: tuple[str, ...],
) -> Graph:
    """Trace the model at ``precision`` (fp16 in torch, int8 by quantising the fp32 graph on
    the calibration images), refuse DFT nodes, attach the metadata."""
    settings: dict[str, Any] = {"input_dtype": input_dtype, "opset": OPSET}
    if precision == "int8":
        assert calibration is not None
        settings |= {"float_stages": list(int8_float_stages), "calibration": calibration.name}
    meta = replace(build_meta(loaded, precision), export=settings)
    module = exportable(loaded.model, meta.classes)
    graph_module = (
        exportable(loaded.model, meta.classes, half=True) if precision == "fp16" else module
    )
    graph = Graph(export_onnx_proto(graph_module, meta.size, input_dtype), meta, module)
    if precision == "int8":
        assert calibration is not None
        graph = _int8(graph, settings, calibration, calibration_limit, int8_float_stages)
    forbid_dft(graph.proto)
    attach_metadata(graph.proto, graph.meta)
    return graph


def _int8(
    fp32: Graph,
    settings: dict[str, Any],
    calibration: Path,
    calibration_limit: int,
    float_stages: tuple[str, ...],
) -> Graph:
    """The fp32 graph quantised on the calibration images, with the int8 threshold matched
    to the fp32 one on the calibration reals (recorded in the metadata)."""
    from .precision import (
        INT8_SCHEME,
        INT8_THRESHOLD_RULE,
        graph_scores,
        match_int8_threshold,
        to_int8,
    )

    meta = fp32.meta
    calib = folder_images(calibration, meta.preprocess, calibration_limit)
    images = calib.batch
    int8 = to_int8(fp32.proto, (images[i : i + 8] for i in range(0, len(images), 8)), float_stages)
    reals = images if calib.labels is None else images[calib.labels == REAL_LABEL]
    threshold = meta.spec.threshold("fp32")
    matched = match_int8_threshold(
        threshold.value, graph_scores(fp32.proto, reals), graph_scores(int8, reals)
    )
    meta = replace(
        meta,
        spec=meta.spec.with_threshold("int8", matched.threshold, INT8_THRESHOLD_RULE),
        export=settings
        | matched.settings()
        | {"fp32_threshold_rule": threshold.rule, "int8_scheme": INT8_SCHEME},
    )
    return Graph(int8, meta, fp32.module, matched)


def _write_torchscript(
    loaded: LoadedCheckpoint, graph: Graph, input_dtype: InputDType, path: Path
) -> int:
    """TorchScript is the fp32 model, with fp32 metadata whatever the ONNX precision."""
    from .torchscript_writer import export_torchscript

    fp32_meta = replace(
        build_meta(loaded, "fp32"), export={"input_dtype": input_dtype, "opset": OPSET}
    )
    return export_torchscript(graph.module, graph.meta.size, input_dtype, fp32_meta, path)


def _images_to_check(folder: Path | None, preprocess: PreprocessConfig, limit: int) -> ImageSet:
    """The check images: a folder's (labelled when it is a dataset), else the bundled photos."""
    if folder is None:
        return bundled_photos(preprocess)
    return folder_images(folder, preprocess, limit)


def file_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"

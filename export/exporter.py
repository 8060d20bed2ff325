"""``dfscan export``: checkpoint → ONNX (+ TorchScript), with metadata and a parity check."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dfscan.export.check_images import bundled_photos, folder_images
from dfscan.export.graph_module import INPUT_DTYPES, InputDType, exportable
from dfscan.export.metadata import build_meta
from dfscan.export.onnx_writer import (
    OPSET,
    attach_metadata,
    export_onnx_proto,
    forbid_dft,
    save_onnx,
)
from dfscan.export.parity import AP_TOLERANCE, ParityError, ParityReport, check_parity
from dfscan.export.precision import INT8_FLOAT_STAGES, MatchedThreshold
from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.model_meta import PRECISIONS, ModelMeta
from dfscan.train.checkpoint import load_checkpoint
from dfscan.train.detector import STAGES


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


def ensure_writable(path: str | Path) -> None:
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
    precision: str = "fp32",
    calibration: str | Path | None = None,
    input_dtype: InputDType = "uint8",
    check: bool = False,
    check_images: str | Path | None = None,
    check_limit: int = 64,
    calibration_limit: int = 128,
    int8_float_stages: tuple[str, ...] = INT8_FLOAT_STAGES,
    ap_tolerance: float = AP_TOLERANCE,
) -> ExportResult:
    """Write the ONNX graph (and TorchScript), optionally checked against the trained model.

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
    for path in (onnx_path, torchscript_path):
        if path is not None:
            ensure_writable(path)

    unknown = sorted(set(int8_float_stages) - set(STAGES))
    if unknown:
        raise DfscanError(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")

    loaded = load_checkpoint(checkpoint)
    settings: dict[str, Any] = {"input_dtype": input_dtype, "opset": OPSET}
    if precision == "int8":
        settings |= {"float_stages": list(int8_float_stages), "calibration": calibration.name}
    meta = replace(build_meta(loaded, precision), export=settings)
    fp32_meta = replace(
        build_meta(loaded, "fp32"), export={"input_dtype": input_dtype, "opset": OPSET}
    )
    matched = None
    module = exportable(loaded.model, meta.classes)
    graph_module = (
        exportable(loaded.model, meta.classes, half=True) if precision == "fp16" else module
    )
    proto = export_onnx_proto(graph_module, meta.size, input_dtype)
    if precision == "int8":
        from dfscan.export.precision import (
            INT8_THRESHOLD_RULE,
            graph_scores,
            match_int8_threshold,
            to_int8,
        )

        assert calibration is not None
        calib = folder_images(calibration, meta.preprocess, calibration_limit)
        images = calib.batch
        int8 = to_int8(
            proto, (images[i : i + 8] for i in range(0, len(images), 8)), int8_float_stages
        )
        reals = images if calib.labels is None else images[calib.labels == 0]
        fp32 = meta.spec.threshold("fp32")
        matched = match_int8_threshold(
            fp32.value, graph_scores(proto, reals), graph_scores(int8, reals)
        )
        meta = replace(
            meta,
            spec=meta.spec.with_threshold("int8", matched.threshold, INT8_THRESHOLD_RULE),
            export=settings | matched.settings() | {"fp32_threshold_rule": fp32.rule},
        )
        proto = int8
    forbid_dft(proto)
    attach_metadata(proto, meta)
    result = ExportResult(onnx_path, save_onnx(proto, onnx_path), meta, 0.0)
    result.int8_threshold = matched

    if torchscript_path is not None:
        from dfscan.export.torchscript_writer import export_torchscript

        result.torchscript_path = torchscript_path  # TorchScript is the fp32 model
        result.torchscript_bytes = export_torchscript(
            module, meta.size, input_dtype, fp32_meta, torchscript_path
        )
    if check:
        images = (
            folder_images(check_images, meta.preprocess, check_limit)
            if check_images is not None
            else bundled_photos(meta.preprocess)
        )
        result.parity = check_parity(
            loaded.model,
            images,
            onnx_path,
            precision,
            input_dtype,
            module,
            torchscript_path,
            ap_tolerance=ap_tolerance,
        )
    result.seconds = time.perf_counter() - start
    return result


def file_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"

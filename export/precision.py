"""int8 variant of an exported fp32 graph (fp16 is built in torch: ``exportable(half=True)``).

Both reduced precisions keep the graph's I/O as exported (uint8 or float32 in, float32 out)
and keep the frontend (normalisation, and the DFT matmuls of ``fft`` models) in float32: the
unitary DFT of 0-255 pixels reaches ~255·S at DC (57,000 at 224², near fp16's 65,504 maximum),
and the high-frequency bins that carry generator traces are tiny next to it, so they would not
survive 8-bit or 16-bit arithmetic.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from dfscan.scanner.errors import DataError


class _BatchReader:
    """ONNX Runtime's CalibrationDataReader protocol over an iterator of input batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}


INT8_FLOAT_STAGES = ("stem", "layer1")
"""Stages int8 leaves in float. Forensic traces are pixel-level residuals computed by the
full-resolution stages, where a weight rounded to 8 bits no longer cancels the image content
and activation rounding adds noise of the signal's own size. Measured on the demo Lite0
(validation AP 0.913 in fp32): all convs int8 → AP 0.603 (max |Δp| 0.97); stem in float →
0.889; stem + layer1 in float → 0.911 (max |Δp| 0.12)."""


def stage_of(node: onnx.NodeProto) -> str | None:
    """The backbone stage a node was exported from (the exporter records module scopes)."""
    scopes = next(
        (p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), ""
    )
    found = re.findall(r"backbone\.stages\.(\w+)", scopes)
    return found[0] if found else None


def to_int8(
    proto: onnx.ModelProto,
    calibration: Iterable[np.ndarray],
    float_stages: Sequence[str] = INT8_FLOAT_STAGES,
) -> onnx.ModelProto:
    """Static QDQ quantisation of Conv and Gemm (per-channel int8 weights, uint8 activations).

    MatMul is not in the quantised op set, so the DFT bases and their products stay float, and
    so do the convolutions of ``float_stages``. Activation ranges come from ``calibration``
    batches (real photos, as the model sees them).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = proto.graph.input[0].name
    keep_float = [
        n.name
        for n in proto.graph.node
        if n.op_type in ("Conv", "Gemm") and stage_of(n) in set(float_stages)
    ]
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise DataError("no calibration images could be read")

    def all_batches() -> Iterator[np.ndarray]:
        yield first
        yield from batches

    with tempfile.TemporaryDirectory(prefix="dfscan-int8-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        onnx.save(proto, src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                _BatchReader(input_name, all_batches()),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Gemm"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep_float,
            )
        return onnx.load(str(out))

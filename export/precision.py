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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from dfscan.scanner.errors import DataError, DfscanError

from .settings import INT8_FLOAT_STAGES


class _BatchReader:
    """ONNX Runtime's CalibrationDataReader protocol over an iterator of input batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}


def stage_of(node: onnx.NodeProto) -> str | None:
    """The backbone stage a node was exported from (the exporter records module scopes)."""
    scopes = next(
        (p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), ""
    )
    found = re.findall(r"backbone\.stages\.(\w+)", scopes)
    return found[0] if found else None


QUANTISED_OPS = ("Conv", "Gemm")

INT8_SCHEME: dict[str, object] = {
    "format": "QDQ",
    "ops": list(QUANTISED_OPS),
    "activations": "uint8",
    "weights": "int8, 7-bit range (reduce_range)",
    "per_channel": True,
    "calibration": "minmax",
}
"""How int8 graphs are quantised; recorded in the model's metadata (``export.int8_scheme``).

Why 7-bit weights: x86 CPUs without VNNI (AVX2 and plain AVX-512) multiply uint8 activations
by int8 weights with VPMADDUBSW, which adds pairs of products into a saturating int16; with
8-bit weights a pair reaches 2·255·127 = 64,770 and is clipped, so the same graph scores
differently on CPUs with and without VNNI (measured on AVX2: AP 0.683 against 0.762 for the
graph's own arithmetic). With 7-bit weights a pair stays within 2·255·63 = 32,130, so every x86
CPU computes the exact integer result and gives the same verdicts. uint8 weights would avoid the
saturation too, but MLAS runs them 4× slower than fp32 on AVX2 (0.46 s against 0.11 s for
256 images at 32²); 7-bit int8 runs at u8s8 speed and costs ~0.03 AP on the tests' 32² model.
"""


def float_stage_nodes(proto: onnx.ModelProto, float_stages: Sequence[str]) -> list[str]:
    """The Conv/Gemm nodes of ``float_stages``; a stage that matches none is an error.

    Stages are found by the module scopes the exporter records on each node. Without this check
    a setting that matches nothing (a graph without scopes, a renamed module) would silently
    quantise every convolution, the configuration measured at AP 0.603 instead of 0.911.
    """
    by_stage: dict[str, list[str]] = {}
    for node in proto.graph.node:
        if node.op_type in QUANTISED_OPS:
            by_stage.setdefault(stage_of(node) or "", []).append(node.name)
    missing = [s for s in float_stages if not by_stage.get(s)]
    if missing:
        found = ", ".join(sorted(s for s in by_stage if s)) or "none (no module scopes)"
        raise DfscanError(
            f"int8 float stages {missing} match no Conv/Gemm node of this graph "
            f"(stages found: {found})",
            hint="pass --int8-float-stages with stages the graph has, or 'none' to quantise all",
        )
    return [name for s in float_stages for name in by_stage[s]]


def to_int8(
    proto: onnx.ModelProto,
    calibration: Iterable[np.ndarray],
    float_stages: Sequence[str] = INT8_FLOAT_STAGES,
) -> onnx.ModelProto:
    """Static QDQ quantisation of Conv and Gemm as ``INT8_SCHEME`` says.

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
    keep_float = float_stage_nodes(proto, float_stages)
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
                op_types_to_quantize=list(QUANTISED_OPS),
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=True,  # portable: see INT8_SCHEME
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep_float,
            )
        return onnx.load(str(out))


INT8_THRESHOLD_RULE = "fp32_fpr_on_calibration_reals"


@dataclass(frozen=True)
class MatchedThreshold:
    """The int8 graph's own threshold: the false-positive rate the fp32 graph has at its
    calibrated threshold on the calibration reals, kept (int8 shifts scores, so the fp32
    threshold would flag a different share of real photos)."""

    threshold: float
    fp32_threshold: float
    fpr: float  # share of the calibration reals flagged, by fp32 at its threshold
    int8_fpr: float  # the same share by int8 at the new threshold (equal up to ties)
    int8_fpr_at_fp32_threshold: float  # what keeping the fp32 threshold would have given
    reals: int

    def settings(self) -> dict[str, float | int | str]:
        return {
            "fp32_threshold": self.fp32_threshold,
            "threshold_reals": self.reals,
            "threshold_fpr": round(self.fpr, 6),
            "threshold_fpr_int8": round(self.int8_fpr, 6),
        }


def matched_threshold(threshold: float, reference: np.ndarray, scores: np.ndarray) -> float:
    """The threshold at which ``scores`` flag as many of these reals as ``reference`` flags at
    ``threshold`` (the same images, scored by two graphs).

    With j reals scored below ``threshold`` by the reference, the new threshold lies in the gap
    between the j-th and (j+1)-th lowest new scores, at the same relative position as
    ``threshold`` in the reference's gap (a quantile-quantile map); beyond either end of the
    scores it keeps its distance to the nearest end. int8 outputs are coarse and tie often, and
    a tie can leave no gap at the right place: then the threshold goes in the middle of the gap
    whose share flagged is closest (the smaller share when two are as close).
    """
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    new = np.sort(np.asarray(scores, dtype=np.float64))
    if len(ref) != len(new) or not len(ref):
        raise ValueError("matched_threshold needs the same non-empty set of images scored twice")
    j = int(np.sum(ref < threshold))
    if j == 0:
        t = threshold + (new[0] - ref[0])
    elif j == len(ref):
        t = threshold + (new[-1] - ref[-1])
    else:  # ref[j - 1] < threshold <= ref[j]
        frac = (threshold - ref[j - 1]) / (ref[j] - ref[j - 1])
        t = new[j - 1] + frac * (new[j] - new[j - 1])
        t = min(max(t, float(np.nextafter(new[j - 1], np.inf))), new[j])
    t = float(np.clip(t, 0.0, 1.0))
    target = len(ref) - j  # reals flagged by the reference
    if int(np.sum(new >= t)) != target:  # ties in the new scores
        u = np.unique(new)
        gaps = [u[0], *((u[:-1] + u[1:]) / 2), np.nextafter(u[-1], np.inf)]
        t = float(min(gaps, key=lambda c: (abs(int(np.sum(new >= c)) - target), np.sum(new >= c))))
    return t


def match_int8_threshold(
    threshold: float, fp32_scores: np.ndarray, int8_scores: np.ndarray
) -> MatchedThreshold:
    t = matched_threshold(threshold, fp32_scores, int8_scores)
    return MatchedThreshold(
        threshold=t,
        fp32_threshold=float(threshold),
        fpr=float(np.mean(fp32_scores >= threshold)),
        int8_fpr=float(np.mean(int8_scores >= t)),
        int8_fpr_at_fp32_threshold=float(np.mean(int8_scores >= threshold)),
        reals=len(fp32_scores),
    )


def graph_scores(proto: onnx.ModelProto, batch: np.ndarray) -> np.ndarray:
    """p_fake of an in-memory graph on the CPU for uint8 NCHW images."""
    from dfscan.scanner.model.runtime import CPU, session_from_bytes

    from .parity import run_onnx

    return run_onnx(session_from_bytes(proto.SerializeToString(), [CPU]), batch).p_fake

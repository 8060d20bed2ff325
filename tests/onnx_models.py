"""Tiny dfscan-format ONNX models built with onnx.helper (no torch), with a known answer.

The "brightness" detector: p_fake = mean of the input pixels / 255 (uint8 input) or the plain
mean (float input, already 0-1), logits = [1 - p, p]. A white image scores 1.0, a black one
0.0, a uniform grey g scores g/255, so tests can assert exact scores and verdicts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.model.meta import INPUT_NAME, OUTPUT_LOGITS, OUTPUT_P_FAKE, ModelMeta
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.scanner.model.spec import DetectorSpec, FrontendSpec, Threshold

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

OPSET = 17
IR_VERSION = 10  # read by onnxruntime >= 1.18


def brightness_meta(size: int = 16, mode: str = "crop", threshold: float = 0.5) -> ModelMeta:
    spec = DetectorSpec(
        arch="brightness_test",
        frontend=FrontendSpec("spatial", 1, {"mean": [0.0] * 3, "std": [1.0] * 3}),
        preprocess=PreprocessConfig(size=size, mode=mode),  # type: ignore[arg-type]
        thresholds={"fp32": Threshold(threshold, "test")},
    )
    return ModelMeta(spec=spec)


def brightness_model(
    path: Path,
    meta: ModelMeta | None = None,
    input_dtype: str = "uint8",
    outputs: tuple[str, ...] = (OUTPUT_P_FAKE, OUTPUT_LOGITS),
    batch: int | str = "N",
    input_size: int | None = None,
    metadata: bool = True,
    props: dict[str, str] | None = None,
) -> Path:
    """Write the brightness detector to ``path``; every knob makes one way a model can differ."""
    meta = meta or brightness_meta()
    side = input_size or meta.size
    elem = TensorProto.UINT8 if input_dtype == "uint8" else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.FLOAT)]
    nodes.append(helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=0))
    scale = 1 / 255 if input_dtype == "uint8" else 1.0
    nodes += [
        helper.make_node("Constant", [], ["scale"], value_float=scale),
        helper.make_node("Mul", ["mean", "scale"], [OUTPUT_P_FAKE]),
        helper.make_node("Constant", [], ["one"], value_float=1.0),
        helper.make_node("Sub", ["one", OUTPUT_P_FAKE], ["p_real"]),
        helper.make_node("Constant", [], ["axis"], value_ints=[1]),
        helper.make_node("Unsqueeze", ["p_real", "axis"], ["p_real2"]),
        helper.make_node("Unsqueeze", [OUTPUT_P_FAKE, "axis"], ["p_fake2"]),
        helper.make_node("Concat", ["p_real2", "p_fake2"], [OUTPUT_LOGITS], axis=1),
    ]
    out_shapes = {OUTPUT_P_FAKE: [batch], OUTPUT_LOGITS: [batch, 2]}
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info(INPUT_NAME, elem, [batch, 3, side, side])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, out_shapes[o]) for o in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata:
        helper.set_model_props(model, meta.to_props() if props is None else props)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def grey(value: int, size: tuple[int, int] = (24, 24)) -> np.ndarray:
    """A uniform RGB image: the brightness model scores it value / 255."""
    return np.full((*size, 3), value, dtype=np.uint8)

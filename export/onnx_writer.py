"""ONNX graphs: exported with torch.onnx (dynamo), checked, tagged and saved as one file."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import onnx
import torch

from dfscan.scanner.errors import ModelError
from dfscan.scanner.model.meta import INPUT_NAME, OUTPUT_LOGITS, OUTPUT_P_FAKE, ModelMeta

from .graph_module import ExportedDetector, InputDType, example_batch

OPSET = 18
SINGLE_FILE_LIMIT = 2**31 - 1  # protobuf's hard limit; bigger models need external data
FORBIDDEN_OPS = frozenset({"DFT", "STFT"})  # ORT: CPU-only, slow and inexact at 224²


def export_onnx_proto(module: ExportedDetector, size: int, dtype: InputDType) -> onnx.ModelProto:
    """Trace ``module`` into an ONNX graph with a dynamic batch dimension."""
    example = example_batch(size, dtype)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_P_FAKE, OUTPUT_LOGITS],
            dynamic_shapes={"image": {0: batch}},
            opset_version=OPSET,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    forbid_dft(proto)
    strip_stack_traces(proto)
    return proto


def strip_stack_traces(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node Python stack traces: they hold the exporting machine's
    file paths and are of no use to a runtime (module scopes are kept: int8 reads them)."""
    for node in proto.graph.node:
        kept = [(p.key, p.value) for p in node.metadata_props if "stack_trace" not in p.key]
        del node.metadata_props[:]
        for key, value in kept:
            node.metadata_props.add(key=key, value=value)


def forbid_dft(proto: onnx.ModelProto) -> None:
    found = sorted({n.op_type for n in proto.graph.node} & FORBIDDEN_OPS)
    if found:
        raise ModelError(f"exported graph contains {found}: the FFT must be folded as matmuls")


def op_types(proto: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


def _producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in proto.graph.node for out in node.output}


def frontend_nodes(proto: onnx.ModelProto) -> list[str]:
    """Nodes that compute the first convolution's input from the image: the frontend."""
    first_conv = next((n for n in proto.graph.node if n.op_type == "Conv"), None)
    if first_conv is None:
        return []
    producers = _producers(proto)
    seen: set[str] = set()
    stack = [first_conv.input[0]]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return [n.name for n in proto.graph.node if n.name in seen]


def attach_metadata(proto: onnx.ModelProto, meta: ModelMeta) -> None:
    """Replace any ``dfscan.*`` props; keep the ones tools like the quantizer wrote."""
    props = meta.to_props()
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (
        f"dfscan detector ({meta.arch}, {meta.input}, {meta.precision}): input "
        f"{INPUT_NAME} (N,3,{meta.size},{meta.size}) RGB; outputs {OUTPUT_P_FAKE} (N,), "
        f"{OUTPUT_LOGITS} (N,2) over {list(meta.classes)}"
    )


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> int:
    """Validate and write a self-contained .onnx atomically; returns its size in bytes."""
    path = Path(path)
    data = proto.SerializeToString()
    if len(data) > SINGLE_FILE_LIMIT:
        raise ModelError(f"model is {len(data) / 2**30:.1f} GiB, over ONNX's 2 GiB single file")
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)

"""fp16 and int8 graphs, a trained model, and the export command's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx")

from dfscan.export.exporter import export_checkpoint  # noqa: E402
from dfscan.export.onnx_writer import frontend_nodes  # noqa: E402
from dfscan.export.precision import stage_of  # noqa: E402
from dfscan.scanner.cli import app  # noqa: E402
from dfscan.scanner.model_meta import read_model_meta  # noqa: E402
from tests.test_export import random_checkpoint  # noqa: E402

runner = CliRunner()


def _float_inputs_of(proto, names: list[str]) -> bool:
    """Every named node computes in float32: no float16 tensor or int8 quantisation feeds it."""
    producers = {out: n for n in proto.graph.node for out in n.output}
    f16 = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    for node in proto.graph.node:
        if node.name not in names:
            continue
        for name in node.input:
            src = producers.get(name)
            if name in f16 or (src is not None and src.op_type == "DequantizeLinear"):
                return False
    return True


@pytest.fixture(scope="module")
def fft_checkpoint(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.ckpt", "resnet50", "fft")


def test_fp16_halves_the_weights_and_keeps_the_fft_in_float(fft_checkpoint, tmp_path: Path):
    fp32 = export_checkpoint(fft_checkpoint, tmp_path / "fp32.onnx")
    fp16 = export_checkpoint(fft_checkpoint, tmp_path / "fp16.onnx", precision="fp16", check=True)
    assert fp16.onnx_bytes < 0.6 * fp32.onnx_bytes
    proto = onnx.load(str(tmp_path / "fp16.onnx"))
    front = frontend_nodes(proto)
    assert {"MatMul"} <= {n.op_type for n in proto.graph.node if n.name in front}
    assert _float_inputs_of(proto, front)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    assert read_model_meta(tmp_path / "fp16.onnx").precision == "fp16"
    row = next(r for r in fp16.parity.rows if r.runtime == "ORT CPU")
    assert row.precision == "fp16" and row.tolerance is None and row.max_dp < 0.05


def test_int8_quantises_conv_and_gemm_only(fft_checkpoint, tiny_dataset: Path, tmp_path: Path):
    out = tmp_path / "int8.onnx"
    result = export_checkpoint(
        fft_checkpoint, out, precision="int8", calibration=tiny_dataset / "real", check=True
    )
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    matmuls = [n.name for n in proto.graph.node if n.op_type == "MatMul"]
    assert matmuls and _float_inputs_of(proto, matmuls)  # the DFT stays float
    convs = {
        s: [n.name for n in proto.graph.node if n.op_type == "Conv" and stage_of(n) == s]
        for s in ("stem", "layer1", "layer4")
    }
    assert convs["stem"] and _float_inputs_of(proto, convs["stem"] + convs["layer1"])
    assert convs["layer4"] and not _float_inputs_of(proto, convs["layer4"])  # quantised
    meta = read_model_meta(out)
    assert meta.precision == "int8" and meta.arch == "resnet50"  # props survive quantisation
    assert meta.export["float_stages"] == ["stem", "layer1"]
    row = next(r for r in result.parity.rows if r.runtime == "ORT CPU")
    assert row.precision == "int8" and row.max_dp < 0.5
    assert result.onnx_bytes < 40e6  # fp32 ResNet-50 is ~95 MB


@pytest.mark.slow
def test_trained_demo_model_exports_with_parity_and_ap(tmp_path: Path):
    from dfscan.train.demo_data import build_demo_dataset
    from dfscan.train.loop import train
    from tests.test_train import tiny_config

    data = build_demo_dataset(tmp_path / "demo", n_real=40, size=64).root
    arch = "efficientnet_lite0"
    cfg = tiny_config(data, tmp_path / "run", arch=arch, size=48, batch_size=16, max_steps=3)
    train(cfg)
    result = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "run" / "model.ckpt"),
            "--onnx",
            str(tmp_path / "demo.onnx"),
            "--torchscript",
            str(tmp_path / "demo.ts"),
            "--check",
            "--check-images",
            str(data),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "AP" in result.output and "ok" in result.output
    meta = read_model_meta(tmp_path / "demo.onnx")
    assert meta.training["split_hash"] and len(meta.training["generators"]) == 4
    assert "val" in meta.metrics and meta.threshold_rule == "eer_on_val"


def test_failed_parity_exits_non_zero_with_the_numbers(fft_checkpoint, tmp_path: Path, monkeypatch):
    monkeypatch.setattr("dfscan.export.parity.FP32_TOLERANCE", -1.0)
    result = runner.invoke(
        app, ["export", str(fft_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--check"]
    )
    assert result.exit_code == 6
    output = " ".join(result.output.split())
    assert "parity check failed" in output and "max |Δ p_fake|" in output


@pytest.mark.parametrize(
    "case,message,code",
    [
        ("missing", "checkpoint not found", 4),
        ("foreign", "is not a dfscan checkpoint", 4),
        ("arch", "unknown architecture 'nope'", 4),
        ("unwritable", "cannot write", 2),
        ("int8", "int8 needs calibration images", 2),
        ("precision", "unknown precision", 2),
    ],
)
def test_export_errors_are_one_line(
    case: str, message: str, code: int, fft_checkpoint, tmp_path: Path
):
    ckpt, out, extra = fft_checkpoint, tmp_path / "m.onnx", []
    if case == "missing":
        ckpt = tmp_path / "nope.ckpt"
    elif case == "foreign":
        ckpt = tmp_path / "foreign.ckpt"
        torch.save({"weights": torch.zeros(2)}, ckpt)
    elif case == "arch":
        data = torch.load(fft_checkpoint, weights_only=True)
        data["config"]["arch"] = "nope"
        ckpt = tmp_path / "arch.ckpt"
        torch.save(data, ckpt)
    elif case == "unwritable":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "m.onnx"  # a file where a folder should be
    elif case == "int8":
        extra = ["--precision", "int8"]
    elif case == "precision":
        extra = ["--precision", "fp8"]
    result = runner.invoke(app, ["export", str(ckpt), "--onnx", str(out), *extra])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in result.output
    assert not out.exists()

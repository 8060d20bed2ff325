"""Export: every registered model × input variant becomes an ONNX graph (and TorchScript) that
computes what the trained model computes, with the metadata the scanner needs inside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")

from dfscan.export.check_images import bundled_photos, folder_images  # noqa: E402
from dfscan.export.exporter import export_checkpoint  # noqa: E402
from dfscan.export.onnx_writer import OPSET, forbid_dft, op_types  # noqa: E402
from dfscan.export.parity import run_onnx  # noqa: E402
from dfscan.export.torchscript_writer import load_torchscript  # noqa: E402
from dfscan.scanner.errors import ModelError  # noqa: E402
from dfscan.scanner.model.meta import ModelMeta, read_model_meta  # noqa: E402
from dfscan.scanner.model.preprocess import PreprocessConfig  # noqa: E402
from dfscan.scanner.model.runtime import CPU, load_session  # noqa: E402
from dfscan.train.models.checkpoint import ModelConfig, load_checkpoint, save_checkpoint  # noqa: E402
from dfscan.train.models.registry import create_model, list_models  # noqa: E402

SIZE = 32


def random_checkpoint(path: Path, arch: str, variant: str, size: int = SIZE, **fields) -> Path:
    torch.manual_seed(0)
    model = create_model(arch, variant, weights="none", size=size).eval()
    config = ModelConfig.for_model(arch, variant, PreprocessConfig(size), model)
    save_checkpoint(path, model, config, **({"threshold": 0.37} | fields))
    return path


@pytest.mark.parametrize("variant", ["spatial", "fft"])
@pytest.mark.parametrize("arch", list_models())
def test_every_model_exports_and_agrees(arch: str, variant: str, tmp_path: Path):
    ckpt = random_checkpoint(tmp_path / "m.ckpt", arch, variant)
    onnx_path, ts_path = tmp_path / "m.onnx", tmp_path / "m.ts"
    result = export_checkpoint(ckpt, onnx_path, ts_path, check=True)

    report = result.parity
    assert report is not None and report.passed, report.failures()
    runtimes = {r.runtime for r in report.rows}
    assert {"TorchScript", "ORT CPU", "eager export"} <= runtimes
    assert all(r.max_dp <= 1e-4 and r.agreement == 1.0 for r in report.rows)
    assert report.images >= 20  # decoded photos, not only random tensors

    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET >= 17
    assert not {"DFT", "STFT"} & op_types(proto)
    if variant == "fft":  # folded as constant-basis products, and the trained model untouched
        assert "MatMul" in op_types(proto)
        assert load_checkpoint(ckpt).model.frontend.impl == "torch"
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "m.onnx", "m.ts"]
    assert str(Path.cwd()) not in onnx_path.read_bytes().decode("latin-1")  # no local paths

    io = load_session(onnx_path, [CPU])
    (inp,) = io.get_inputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [3, SIZE, SIZE])
    assert isinstance(inp.shape[0], str)  # dynamic batch
    assert [(o.name, o.shape[1:]) for o in io.get_outputs()] == [("p_fake", []), ("logits", [2])]


@pytest.fixture(scope="module")
def exported_fft(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("fft")
    ckpt = random_checkpoint(
        tmp / "m.ckpt",
        "resnet50",
        "fft",
        threshold_rule="eer_on_val",
        data={"root": "/home/me/secret/demo", "split_hash": "abc", "generators": ["g1"]},
        metrics={"val": {"ap": 0.9, "roc_auc": 0.8}},
    )
    export_checkpoint(ckpt, tmp / "m.onnx", tmp / "m.ts")
    return ckpt, tmp / "m.onnx", tmp / "m.ts"


def test_metadata_round_trip(exported_fft):
    _, onnx_path, ts_path = exported_fft
    meta = read_model_meta(onnx_path)
    assert (meta.arch, meta.input, meta.precision) == ("resnet50", "fft", "fp32")
    assert meta.preprocess == PreprocessConfig(SIZE, "crop")
    assert meta.classes == ("real", "fake") and meta.threshold == pytest.approx(0.37)
    assert meta.threshold_rule == "eer_on_val"
    assert meta.training["split_hash"] == "abc" and meta.training["generators"] == ["g1"]
    assert meta.training["root"] == "demo"  # the folder name travels, not the trainer's path
    assert meta.metrics["val"]["ap"] == 0.9
    assert {"dfscan", "torch", "onnx"} <= set(meta.versions)
    assert meta.export == {"input_dtype": "uint8", "opset": OPSET}
    assert ModelMeta.from_props(meta.to_props()) == meta
    _, ts_meta = load_torchscript(ts_path)
    assert ts_meta == meta


def test_torchscript_loads_without_dfscan(exported_fft):
    _, onnx_path, ts_path = exported_fft
    code = (
        "import sys; sys.modules['dfscan'] = None\n"  # any dfscan import would fail
        "import torch\n"
        f"m = torch.jit.load({str(ts_path)!r})\n"
        f"p, logits = m(torch.zeros(3, 3, {SIZE}, {SIZE}, dtype=torch.uint8))\n"
        "assert p.shape == (3,) and logits.shape == (3, 2)\n"
        "print(float(p[0]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    session = load_session(onnx_path, [CPU])
    expected = run_onnx(session, np.zeros((1, 3, SIZE, SIZE), np.uint8)).p_fake[0]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-5)


def test_batch_size_does_not_change_per_image_outputs(exported_fft):
    _, onnx_path, _ = exported_fft
    images = bundled_photos(PreprocessConfig(SIZE)).batch[:17]
    session = load_session(onnx_path, [CPU])
    whole = run_onnx(session, images)
    for bs in (1, 3):
        parts = [run_onnx(session, images[i : i + bs]) for i in range(0, 17, bs)]
        p = np.concatenate([o.p_fake for o in parts])
        logits = np.concatenate([o.logits for o in parts])
        np.testing.assert_allclose(p, whole.p_fake, atol=1e-6)
        np.testing.assert_allclose(logits, whole.logits, atol=1e-5)


def test_float_input_graph(tmp_path: Path):
    ckpt = random_checkpoint(tmp_path / "m.ckpt", "efficientnet_lite0", "fft")
    result = export_checkpoint(ckpt, tmp_path / "f.onnx", input_dtype="float32", check=True)
    assert result.parity is not None and result.parity.passed, result.parity.failures()
    (inp,) = load_session(tmp_path / "f.onnx", [CPU]).get_inputs()
    assert inp.type == "tensor(float)"


def test_onnx_without_dfscan_metadata_is_refused(exported_fft, tmp_path: Path):
    _, onnx_path, _ = exported_fft
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="without dfscan metadata"):
        read_model_meta(tmp_path / "plain.onnx")
    (tmp_path / "broken.onnx").write_bytes(onnx_path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        read_model_meta(tmp_path / "broken.onnx")


def test_forbid_dft_rejects_the_onnx_dft_op():
    from onnx import TensorProto, helper

    node = helper.make_node("DFT", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 2])],
    )
    with pytest.raises(ModelError, match="DFT"):
        forbid_dft(helper.make_model(graph))


def test_check_images_from_a_labelled_folder_give_ap(tiny_dataset: Path):
    images = folder_images(tiny_dataset, PreprocessConfig(SIZE), limit=12)
    assert len(images.names) == 12 and images.labels is not None
    assert {n.split("/")[0] for n in images.names} == {"real", "gan_a", "gan_b"}

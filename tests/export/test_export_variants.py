"""fp16 and int8 graphs of models trained on photos, and the export command's errors.

Reduced precision is judged on trained detectors (a random one scores every image ≈ 0.5, so
no precision loss could show): a Lite0 fine-tuned from ImageNet for a few steps on
``dfscan demo-data`` crops at 32², once with pixels (it learns fast: AP ≈ 0.8 on its data)
and once with the spectrum (for the DFT bases; it learns slowly at this size, its scores spread
over ~0.3), trained once per module in ~20 s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from dfscan.export.check_images import bundled_photos, folder_images  # noqa: E402
from dfscan.export.exporter import ExportResult, export_checkpoint  # noqa: E402
from dfscan.export.graph_module import exportable  # noqa: E402
from dfscan.export.onnx_writer import frontend_nodes  # noqa: E402
from dfscan.export.parity import (  # noqa: E402
    SATURATION_FREE_WEIGHT,
    ParityError,
    check_parity,
    exact_int8_scores,
    max_int8_weight,
    run_onnx,
    run_torch,
)
from dfscan.export.precision import (  # noqa: E402
    INT8_SCHEME,
    INT8_THRESHOLD_RULE,
    matched_threshold,
    stage_of,
    to_int8,
)
from dfscan.export.torchscript_writer import load_torchscript  # noqa: E402
from dfscan.scanner.cli.app import app  # noqa: E402
from dfscan.scanner.errors import DfscanError  # noqa: E402
from dfscan.scanner.model.meta import read_model_meta  # noqa: E402
from dfscan.scanner.model.runtime import CPU, load_session  # noqa: E402
from dfscan.train.models.checkpoint import load_checkpoint  # noqa: E402

from ..conftest import one_torch_thread, write_image  # noqa: E402
from .test_export import random_checkpoint  # noqa: E402

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


@dataclass(frozen=True)
class Trained:
    data: Path  # demo-data folder: real/ + four simulated generators (labelled)
    spatial: Path  # checkpoints
    fft: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    from dfscan.train.data.augment_config import AugmentConfig
    from dfscan.train.data.demo import build_demo_dataset
    from dfscan.train.fit.config import TrainConfig
    from dfscan.train.fit.loop import train

    tmp = tmp_path_factory.mktemp("trained")
    data = build_demo_dataset(tmp / "data", n_real=48, size=64).root
    with one_torch_thread():
        for variant, steps, epochs in (("spatial", 5, 6), ("fft", 6, 4)):
            cfg = TrainConfig(
                data=data,
                out=tmp / variant,
                arch="efficientnet_lite0",
                input=variant,
                weights="imagenet",
                train_layers="all",
                epochs=epochs,
                batch_size=16,
                lr=1e-3,
                workers=0,
                size=32,
                max_steps=steps,
                augment=AugmentConfig(),
            )
            train(cfg)
    return Trained(data, tmp / "spatial" / "model.ckpt", tmp / "fft" / "model.ckpt")


def _frontend_constants(proto) -> list[bytes]:
    """The float32 constants the frontend nodes read (DFT bases, mean/std), as raw bytes."""
    front = set(frontend_nodes(proto))
    inits = {i.name: i for i in proto.graph.initializer}
    names = {n for node in proto.graph.node if node.name in front for n in node.input}
    arrays = [numpy_helper.to_array(inits[n]) for n in names if n in inits]
    for node in proto.graph.node:  # constants folded into Constant nodes
        if node.name in front and node.op_type == "Constant":
            arrays += [numpy_helper.to_array(a.t) for a in node.attribute if a.type == a.TENSOR]
    return sorted(a.astype(np.float32).tobytes() for a in arrays if a.size > 1)


@dataclass(frozen=True)
class FFTExports:
    fp32: Path
    fp16: Path
    fp32_bytes: int
    fp16_result: ExportResult  # exported with --check on the labelled demo images


@pytest.fixture(scope="module")
def fft_exports(trained: Trained, tmp_path_factory) -> FFTExports:
    tmp = tmp_path_factory.mktemp("fft-exports")
    fp32 = export_checkpoint(trained.fft, tmp / "fp32.onnx")
    fp16 = export_checkpoint(
        trained.fft, tmp / "fp16.onnx", precision="fp16", check=True, check_images=trained.data
    )
    return FFTExports(tmp / "fp32.onnx", tmp / "fp16.onnx", fp32.onnx_bytes, fp16)


@pytest.mark.parametrize("variant", ["fft", "spatial"])
def test_fp16_module_keeps_the_frontend_constants_in_float32(variant: str, trained: Trained):
    model = load_checkpoint(getattr(trained, variant)).model
    half = exportable(model, half=True)
    assert next(half.detector.backbone.parameters()).dtype == torch.float16
    buffers = dict(exportable(model).detector.frontend.named_buffers())
    assert buffers  # DFT bases, or mean/std
    for name, buf in buffers.items():  # bit for bit: never rounded through float16
        assert buf.dtype == torch.float32 and torch.equal(
            half.detector.frontend.get_buffer(name), buf
        )


def test_fp16_graph_keeps_the_dft_bases_exact_and_its_ap(fft_exports: FFTExports, trained):
    fp16 = fft_exports.fp16_result
    assert fp16.onnx_bytes < 0.6 * fft_exports.fp32_bytes
    proto = onnx.load(str(fft_exports.fp16))
    front = frontend_nodes(proto)
    assert {"MatMul"} <= {n.op_type for n in proto.graph.node if n.name in front}
    assert _float_inputs_of(proto, front)
    constants = _frontend_constants(proto)
    assert constants and constants == _frontend_constants(onnx.load(str(fft_exports.fp32)))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    assert read_model_meta(fft_exports.fp16).precision == "fp16"

    report = fp16.parity
    assert report is not None and report.passed, report.failures()
    row = next(r for r in report.rows if r.runtime == "ORT CPU")
    assert row.precision == "fp16" and row.tolerance is None
    assert row.ap_floor == pytest.approx(report.reference_ap - 0.01)
    assert 0 < row.max_dp < 0.02 and row.ap >= row.ap_floor
    p = run_onnx(load_session(fft_exports.fp16, [CPU]), _images(trained, trained.fft)).p_fake
    assert p.max() - p.min() > 0.2  # a trained model: scores spread, not ≈ 0.5 everywhere


def test_fp16_ap_on_unlabelled_images_is_reported_not_checked(
    fft_exports: FFTExports, trained: Trained
):
    model = load_checkpoint(trained.fft).model
    images = bundled_photos(load_checkpoint(trained.fft).config.preprocess)
    report = check_parity(model, images, fft_exports.fp16, "fp16", "uint8", cuda=False)
    assert report.passed and report.reference_ap is None
    assert all(r.ap_floor is None for r in report.rows)
    assert any("AP not checked" in n for n in report.notes)


def _images(trained: Trained, ckpt: Path, sub: str = "") -> np.ndarray:
    return folder_images(trained.data / sub, load_checkpoint(ckpt).config.preprocess, 500).batch


def test_int8_has_its_own_threshold_at_the_fp32_false_positive_rate(
    trained: Trained, tmp_path: Path
):
    ckpt, reals = trained.spatial, trained.data / "real"
    out = tmp_path / "int8.onnx"
    result = export_checkpoint(  # a 32² model loses ~0.01 AP at int8 (96²: 0.870 → 0.866)
        ckpt,
        out,
        tmp_path / "m.ts",
        precision="int8",
        calibration=reals,
        check=True,
        check_images=trained.data,
        ap_tolerance=0.05,
    )
    fp32_threshold = load_checkpoint(ckpt).threshold
    meta = read_model_meta(out)
    assert meta.precision == "int8" and meta.threshold_rule == INT8_THRESHOLD_RULE
    assert meta.export["fp32_threshold"] == fp32_threshold
    assert meta.export["fp32_threshold_rule"] == "eer_on_val"
    assert meta.export["threshold_reals"] == 48
    assert meta.export["float_stages"] == ["stem", "layer1"]
    assert meta.threshold != fp32_threshold  # int8 moved the scores: its own threshold
    _, ts_meta = load_torchscript(tmp_path / "m.ts")  # TorchScript is the fp32 model
    assert (ts_meta.precision, ts_meta.threshold) == ("fp32", fp32_threshold)
    assert ts_meta.threshold_rule == "eer_on_val" and "fp32_threshold" not in ts_meta.export

    batch = _images(trained, ckpt, "real")
    fpr, fpr8 = meta.export["threshold_fpr"], meta.export["threshold_fpr_int8"]
    p8 = run_onnx(load_session(out, [CPU]), batch).p_fake
    assert 0 < fpr < 1 and np.mean(p8 >= meta.threshold) == pytest.approx(fpr8, abs=1e-6)
    # as close to fp32's share as int8's (coarse, often tied) scores allow
    achievable = [np.mean(p8 >= c) for c in [*np.unique(p8), 1.01]]
    assert abs(fpr8 - fpr) == pytest.approx(min(abs(a - fpr) for a in achievable), abs=1e-5)
    assert abs(fpr8 - fpr) < abs(np.mean(p8 >= fp32_threshold) - fpr) + 1e-9
    # the reference is the fp32 graph; eager torch may differ by the one real whose score the
    # EER threshold was taken from (validation reals are among the calibration reals)
    p32 = run_torch(load_checkpoint(ckpt).model, batch, "uint8").p_fake
    assert abs(np.mean(p32 >= fp32_threshold) - fpr) <= 1 / len(batch) + 1e-9

    row = next(r for r in result.parity.rows if r.runtime == "ORT CPU")
    assert result.parity.passed, result.parity.failures()
    assert row.precision == "int8" and row.ap >= row.ap_floor
    assert row.ap_floor == pytest.approx(result.parity.reference_ap - 0.05)
    # the 5-step model learned something: chance is 0.5 on these 48 real + 48 fake images (its
    # AP moves with the seed's stream, e.g. 0.61 since the backbone is timm's)
    assert result.parity.reference_ap > 0.55
    # the same verdicts on every CPU: the integer kernels compute the graph's own arithmetic
    assert meta.export["int8_scheme"] == INT8_SCHEME
    assert result.parity.int8_drift is not None and result.parity.int8_drift < 5e-3  # ~4e-4
    note = next(n for n in result.parity.notes if "int8 kernels on this CPU" in n)
    assert "can saturate" not in note


def test_int8_weights_are_7_bit_so_no_cpu_saturates(trained: Trained, tmp_path: Path):
    """VPMADDUBSW (x86 without VNNI) sums two uint8·int8 products in a saturating int16:
    weights within ±64 keep every pair below 32,767, whatever the activations."""
    out = tmp_path / "int8.onnx"
    export_checkpoint(trained.spatial, out, precision="int8", calibration=trained.data / "real")
    proto = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights = [
        inits[n.input[0]]
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0], np.zeros(0)).dtype == np.int8
    ]
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert 60 <= largest == max_int8_weight(out) <= SATURATION_FREE_WEIGHT  # range used
    assert 2 * 255 * largest <= 32767
    batch = _images(trained, trained.spatial)
    kernels = run_onnx(load_session(out, [CPU]), batch).p_fake
    assert np.mean(np.abs(kernels - exact_int8_scores(out, batch))) < 5e-3  # rounding: ~4e-4


def test_int8_that_loses_ap_fails_the_check_with_exit_6(trained: Trained, tmp_path: Path):
    flat = tmp_path / "flat"  # calibrated on flat images: activation ranges far too narrow
    for i, value in enumerate((0, 128, 255)):
        write_image(flat / f"{i}.png", np.full((32, 32, 3), value, np.uint8))
    out = tmp_path / "bad.onnx"
    args = ["export", str(trained.spatial), "--onnx", str(out), "--precision", "int8"]
    args += ["--calibration", str(flat), "--int8-float-stages", "none"]
    result = runner.invoke(app, [*args, "--check", "--check-images", str(trained.data)])
    assert result.exit_code == 6, result.output
    output = " ".join(result.output.split())
    assert "parity check failed" in output and "below the allowed" in output
    assert out.exists()  # written for inspection, as the hint says


def test_int8_float_stages_that_match_no_node_are_an_error(
    fft_exports: FFTExports, trained: Trained, tmp_path: Path, monkeypatch
):
    proto = onnx.load(str(fft_exports.fp32))
    batches = [_images(trained, trained.fft, "real")[:8]]
    assert to_int8(proto, batches, ())  # nothing kept in float: nothing to match
    monkeypatch.setattr("dfscan.export.precision.stage_of", lambda node: "layer4")
    with pytest.raises(DfscanError, match=r"\['stem'\] match no Conv/Gemm node.*found: layer4"):
        to_int8(proto, batches, ("stem", "layer4"))
    for node in proto.graph.node:  # a graph without module scopes: no stage can be found
        del node.metadata_props[:]
    monkeypatch.undo()
    with pytest.raises(DfscanError, match=r"match no Conv/Gemm node.*found: none"):
        to_int8(proto, batches, ("layer1",))


def test_int8_quantises_conv_and_gemm_only(fft_exports: FFTExports, trained, tmp_path: Path):
    out = tmp_path / "int8.onnx"
    result = export_checkpoint(
        trained.fft, out, precision="int8", calibration=trained.data / "real"
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
    assert meta.precision == "int8" and meta.arch == "efficientnet_lite0"  # props survive
    assert result.onnx_bytes < 0.5 * fft_exports.fp32_bytes


def test_matched_threshold_keeps_the_share_flagged():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, 200)
    shifted = np.clip(ref * 0.8 + 0.15, 0, 1)  # a monotone change of every score
    for t in (0.05, 0.3, 0.5, 0.77, 0.95):
        new_t = matched_threshold(t, ref, shifted)
        assert np.mean(shifted >= new_t) == np.mean(ref >= t)
        assert new_t == pytest.approx(t * 0.8 + 0.15, abs=0.01)
    assert matched_threshold(1.0, ref, shifted) == pytest.approx(1.0 + shifted.max() - ref.max())
    assert matched_threshold(0.0, ref, ref + 0.01) == pytest.approx(0.01)
    noisy = np.clip(ref + rng.normal(0, 0.05, 200), 0, 1)  # not monotone: the share still holds
    for t in (0.2, 0.5, 0.8):
        assert np.mean(noisy >= matched_threshold(t, ref, noisy)) == np.mean(ref >= t)
    coarse = np.round(ref * 4) / 4  # int8-like ties: 5 distinct scores
    for t in (0.3, 0.5, 0.9):
        got = np.mean(coarse >= matched_threshold(t, ref, coarse))
        best = min(
            abs(np.mean(coarse >= c) - np.mean(ref >= t)) for c in (0, 0.25, 0.5, 0.75, 1, 2)
        )
        assert abs(got - np.mean(ref >= t)) == pytest.approx(best)


@pytest.fixture(scope="module")
def fft_checkpoint(tmp_path_factory) -> Path:
    """Random weights: only for the error cases below, where no score is looked at."""
    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.ckpt", "resnet50", "fft")


@pytest.mark.slow
def test_trained_demo_model_exports_with_parity_and_ap(tmp_path: Path):
    from dfscan.train.data.demo import build_demo_dataset
    from dfscan.train.fit.loop import train

    from ..train.test_train import tiny_config

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


def test_failed_parity_exits_6_with_the_numbers(fft_exports: FFTExports, trained, monkeypatch):
    monkeypatch.setattr("dfscan.export.parity.FP32_TOLERANCE", -1.0)
    loaded = load_checkpoint(trained.fft)
    images = folder_images(trained.data, loaded.config.preprocess, 16)
    report = check_parity(loaded.model, images, fft_exports.fp32, "fp32", "uint8", cuda=False)
    result = ExportResult(fft_exports.fp32, fft_exports.fp32_bytes, None, 0.0, parity=report)
    with pytest.raises(ParityError) as err:
        result.raise_for_parity()
    assert err.value.exit_code == 6
    assert "parity check failed" in err.value.message and "max |Δ p_fake|" in err.value.message


@pytest.mark.parametrize(
    "case,message,code",
    [
        ("missing", "checkpoint not found", 4),
        ("foreign", "is not a dfscan checkpoint", 4),
        ("arch", "unknown architecture 'nope'", 4),
        ("edited", "does not match its hash", 4),
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
    elif case == "edited":
        data = torch.load(fft_checkpoint, weights_only=True)
        data["config"]["spec"]["preprocess"]["size"] += 8  # without a new hash
        ckpt = tmp_path / "edited.ckpt"
        torch.save(data, ckpt)
    elif case == "foreign":
        ckpt = tmp_path / "foreign.ckpt"
        torch.save({"weights": torch.zeros(2)}, ckpt)
    elif case == "arch":
        data = torch.load(fft_checkpoint, weights_only=True)
        spec = load_checkpoint(fft_checkpoint).spec
        data["config"]["spec"] = replace(spec, arch="nope").to_dict()  # a valid hash
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


@pytest.mark.parametrize(
    ("largest", "path", "warned"),
    [(64, "AVX2 (no VNNI)", False), (127, "AVX-512 VNNI", False), (127, "AVX2 (no VNNI)", True)],
)
def test_the_check_warns_of_saturation_only_for_8_bit_weights_without_vnni(
    monkeypatch, tmp_path: Path, largest: int, path: str, warned: bool
):
    from dfscan.export import parity
    from dfscan.export.parity import Outputs, ParityReport

    monkeypatch.setattr(parity, "max_int8_weight", lambda _p: largest)
    monkeypatch.setattr(parity, "exact_int8_scores", lambda _p, batch: np.full(len(batch), 0.5))
    monkeypatch.setattr("dfscan.scanner.model.cpu.int8_kernels", lambda: path)
    monkeypatch.setattr("dfscan.scanner.model.cpu.has_vnni", lambda: "(no VNNI)" not in path)
    report = ParityReport(2, "test", [])
    kernels = Outputs(np.array([0.5, 0.52]), np.zeros((2, 2)))
    parity._note_int8_drift(report, tmp_path / "m.onnx", np.zeros((2, 3, 8, 8)), kernels)
    assert report.int8_drift == pytest.approx(0.01)
    assert path in report.notes[0] and ("can saturate" in report.notes[0]) == warned

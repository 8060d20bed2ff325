"""The detector spec is the one record of what feeds and reads a model (issue 11.1).

Each test here fails when some part of dfscan consults something other than the artifact's
spec: the registry's mean/std, a module constant, a flat metadata key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfscan.scanner.errors import ModelError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.meta import ModelMeta, read_model_meta
from dfscan.scanner.model.preprocess import PreprocessConfig, decode_side, prepare
from dfscan.scanner.model.spec import SPEC_VERSION, DetectorSpec, FrontendSpec, Threshold

from ..onnx_models import brightness_meta, brightness_model

torch = pytest.importorskip("torch")

from dfscan.train.data.folder import Sample  # noqa: E402
from dfscan.train.data.loaders import ImageDataset  # noqa: E402
from dfscan.train.models.checkpoint import (  # noqa: E402
    ModelConfig,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from dfscan.train.models.registry import create_model  # noqa: E402


def _spec(**preprocess) -> DetectorSpec:
    return DetectorSpec(
        "test_arch",
        FrontendSpec("spatial", 1, {"mean": [0.5] * 3, "std": [0.25] * 3}),
        PreprocessConfig(size=16, **preprocess),
        thresholds={"fp32": Threshold(0.4, "test")},
    )


def _saved(path: Path, variant: str = "spatial", **fields) -> tuple[Path, ModelConfig]:
    """A random efficientnet_lite0 at 32² (the fastest registered arch to build)."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", variant, weights="none", size=32).eval()
    config = ModelConfig.for_model("efficientnet_lite0", variant, PreprocessConfig(32), model)
    save_checkpoint(path, model, config, **({"threshold": 0.3, "threshold_rule": "r"} | fields))
    return path, config


def _rewrite_spec(path: Path, spec: DetectorSpec) -> None:
    raw = torch.load(path, weights_only=True)
    raw["config"]["spec"] = spec.to_dict()
    torch.save(raw, path)


# --- the record itself ----------------------------------------------------------------------


def test_spec_round_trips_and_hashes_its_whole_content():
    spec = _spec()
    assert DetectorSpec.from_dict(spec.to_dict()) == spec
    assert DetectorSpec.from_json(spec.to_json()) == spec
    changed = [
        replace(spec, arch="other"),
        replace(spec, classes=("fake", "real")),
        replace(spec, frontend=FrontendSpec("spatial", 1, {"mean": [0.4] * 3, "std": [0.25] * 3})),
        replace(spec, preprocess=PreprocessConfig(size=16, interpolation="bicubic")),
        replace(spec, preprocess=PreprocessConfig(size=16, alpha_background=(0, 0, 0))),
        replace(spec, preprocess=PreprocessConfig(size=16, reduce_on_decode=False)),
        spec.with_threshold("fp32", 0.41, "test"),
        spec.with_threshold("int8", 0.4, "test"),
    ]
    hashes = {spec.sha256, *(c.sha256 for c in changed)}
    assert len(hashes) == len(changed) + 1  # every field is in the hash


def test_edited_newer_or_incomplete_specs_are_refused():
    d = _spec().to_dict()
    edited = {**d, "preprocess": {**d["preprocess"], "size": 32}}
    with pytest.raises(ModelError, match="does not match its hash"):
        DetectorSpec.from_dict(edited)
    with pytest.raises(ModelError, match=f"reads up to {SPEC_VERSION}"):
        DetectorSpec.from_dict({**d, "version": SPEC_VERSION + 1})
    missing = {**d, "preprocess": {k: v for k, v in d["preprocess"].items() if k != "padding"}}
    with pytest.raises(ModelError, match="lack padding"):
        DetectorSpec.from_dict(missing)
    newer_recipe = replace(_spec(), frontend=FrontendSpec("spatial", 99, {}))
    with pytest.raises(ModelError, match="recipe 99"):
        DetectorSpec.from_dict(newer_recipe.to_dict())
    with pytest.raises(ModelError, match="no int8 threshold"):
        _spec().threshold("int8")


# --- the checkpoint: build_model reads the spec, not the registry ---------------------------


def test_build_model_takes_the_normalisation_from_the_checkpoint(tmp_path: Path):
    path, _ = _saved(tmp_path / "m.ckpt")
    own = FrontendSpec("spatial", 1, {"mean": [0.1, 0.2, 0.3], "std": [0.9, 0.8, 0.7]})
    _rewrite_spec(path, replace(load_checkpoint(path).spec, frontend=own))
    model = load_checkpoint(path).model
    assert model.frontend.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert model.frontend.std.flatten().tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_build_model_takes_the_fft_constant_from_the_checkpoint(tmp_path: Path):
    path, _ = _saved(tmp_path / "m.ckpt", "fft")
    loaded = load_checkpoint(path)
    assert loaded.spec.frontend.constants == {"log_std": 1.9}
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        before = loaded.model.frontend(x)
    _rewrite_spec(path, replace(loaded.spec, frontend=FrontendSpec("fft", 1, {"log_std": 3.8})))
    with torch.no_grad():
        after = load_checkpoint(path).model.frontend(x)
    torch.testing.assert_close(after * 2, before)


def test_checkpoint_threshold_lives_in_the_spec(tmp_path: Path):
    path, _ = _saved(tmp_path / "m.ckpt")
    raw = read_checkpoint(path)
    assert "threshold" not in raw and "threshold_rule" not in raw
    loaded = load_checkpoint(path)
    assert (loaded.threshold, loaded.threshold_rule) == (0.3, "r")
    uncalibrated, _ = _saved(tmp_path / "u.ckpt", threshold=None, threshold_rule=None)
    assert load_checkpoint(uncalibrated).threshold_rule == "uncalibrated_default"


def test_an_edited_checkpoint_spec_is_refused(tmp_path: Path):
    path, _ = _saved(tmp_path / "m.ckpt")
    raw = torch.load(path, weights_only=True)
    raw["config"]["spec"]["preprocess"]["mode"] = "resize"
    torch.save(raw, path)
    with pytest.raises(ModelError, match="does not match its hash"):
        load_checkpoint(path)


def _as_format_1(path: Path, mode: str) -> Path:
    """Rewrite a checkpoint the way dfscan wrote them before specs (flat config)."""
    raw = torch.load(path, weights_only=True)
    spec = raw["config"]["spec"]
    raw["format_version"] = 1
    raw["threshold"], raw["threshold_rule"] = 0.3, "eer_on_val"
    raw["config"] = {
        "arch": spec["arch"],
        "input": spec["frontend"]["variant"],
        "preprocess": {"size": spec["preprocess"]["size"], "mode": mode},
        "train_layers": raw["config"]["train_layers"],
        "classes": spec["classes"],
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    torch.save(raw, path)
    return path


def test_format_1_checkpoints_load_in_crop_mode_and_are_refused_in_resize_mode(tmp_path: Path):
    path, _ = _saved(tmp_path / "m.ckpt")
    loaded = load_checkpoint(_as_format_1(path, "crop"))
    assert loaded.spec.preprocess.version == 1 and loaded.spec.preprocess.mode == "crop"
    assert (loaded.threshold, loaded.threshold_rule) == (0.3, "eer_on_val")
    assert loaded.spec.frontend.constants == {"mean": [0.5] * 3, "std": [0.5] * 3}
    resized, _ = _saved(tmp_path / "r.ckpt")
    with pytest.raises(ModelError, match="reduce-on-decode cannot be told"):
        load_checkpoint(_as_format_1(resized, "resize"))


# --- the scanner feeds pixels as the spec says -----------------------------------------------


def _transparent_png(path: Path, side: int = 16) -> Path:
    rgba = np.zeros((side, side, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(path)
    return path


@pytest.mark.parametrize("background,score", [((255, 255, 255), 1.0), ((0, 0, 0), 0.0)])
def test_the_scanner_composites_alpha_on_the_specs_background(tmp_path, background, score):
    meta = brightness_meta()
    meta = replace(meta, spec=replace(meta.spec, preprocess=replace(
        meta.preprocess, alpha_background=background)))  # fmt: skip
    detector = Detector.from_onnx(brightness_model(tmp_path / "m.onnx", meta))
    png = _transparent_png(tmp_path / "a.png")
    assert detector.predict([png])[0] == pytest.approx(score)
    assert detector.predict([Image.open(png)])[0] == pytest.approx(score)


def test_padding_and_interpolation_follow_the_spec():
    small = Image.fromarray(np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3))
    padded = {p: prepare(small, PreprocessConfig(size=10, padding=p)) for p in ("edge", "reflect")}
    assert not np.array_equal(padded["edge"], padded["reflect"])
    np.testing.assert_array_equal(
        padded["edge"], np.pad(np.asarray(small), ((2, 2),) * 2 + ((0, 0),), "edge")
    )
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8))
    resized = {
        i: prepare(big, PreprocessConfig(size=16, mode="resize", interpolation=i))
        for i in ("nearest", "bicubic")
    }
    assert not np.array_equal(resized["nearest"], resized["bicubic"])


def test_reduce_on_decode_is_the_specs_choice():
    assert decode_side(PreprocessConfig(size=64, mode="resize")) == 64
    assert decode_side(PreprocessConfig(size=64, mode="resize", reduce_on_decode=False)) is None
    assert decode_side(PreprocessConfig(size=64, mode="crop")) is None


def test_training_decodes_through_the_spec_too(tmp_path: Path):
    _transparent_png(tmp_path / "a.png", 32)
    cfg = PreprocessConfig(size=16, alpha_background=(0, 0, 0))
    ds = ImageDataset(tmp_path, [Sample("a.png", 1, "gen", "a")], cfg, None)
    assert int(ds[0]["x"].max()) == 0  # composited on black, as the spec says


# --- the ONNX file ---------------------------------------------------------------------------


def test_onnx_metadata_is_the_spec_alone(tmp_path: Path):
    meta = brightness_meta(threshold=0.25)
    props = meta.to_props()
    assert "dfscan.spec" in props and "dfscan.crop_size" not in props
    assert "dfscan.threshold" not in props  # one source: the spec's thresholds
    read = read_model_meta(brightness_model(tmp_path / "m.onnx", meta))
    assert read.spec == meta.spec and read.threshold == 0.25


def test_format_1_onnx_loads_in_crop_mode_and_is_refused_in_resize_mode(tmp_path: Path):
    legacy = {
        "dfscan.format": "dfscan-onnx",
        "dfscan.format_version": "1",
        "dfscan.arch": "brightness_test",
        "dfscan.input": "spatial",
        "dfscan.crop_size": "16",
        "dfscan.preprocess_mode": "crop",
        "dfscan.classes": '["real", "fake"]',
        "dfscan.threshold": "0.25",
        "dfscan.threshold_rule": "eer_on_val",
        "dfscan.precision": "fp32",
    }
    meta = ModelMeta.from_props(legacy)
    assert meta.threshold == 0.25 and meta.preprocess.version == 1 and meta.size == 16
    with pytest.raises(ModelError, match="resize-mode model"):
        ModelMeta.from_props(legacy | {"dfscan.preprocess_mode": "resize"})


def test_an_onnx_file_without_the_threshold_of_its_precision_is_refused():
    meta = brightness_meta()
    props = meta.to_props() | {"dfscan.precision": "int8"}
    with pytest.raises(ModelError, match="no int8 threshold"):
        ModelMeta.from_props(props)


def test_the_exported_graph_carries_the_checkpoints_spec(tmp_path: Path):
    from dfscan.export.exporter import export_checkpoint

    path, _ = _saved(tmp_path / "m.ckpt", "fft")
    result = export_checkpoint(path, tmp_path / "m.onnx", precision="fp16")
    spec = load_checkpoint(path).spec
    read = read_model_meta(tmp_path / "m.onnx")
    assert read.spec.frontend == spec.frontend and read.spec.preprocess == spec.preprocess
    assert read.spec.thresholds["fp32"] == spec.thresholds["fp32"]
    assert read.precision == "fp16" and read.threshold == spec.threshold("fp32").value
    assert read.spec == result.meta.spec  # what the exporter reported is what the file says

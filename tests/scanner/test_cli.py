"""The CLI edge: exit codes, one-line errors, files written; and a torch-free base."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app

from ..conftest import make_folder_dataset

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("dfscan ")
    result = run("--help")
    assert result.exit_code == 0
    for command in ("scan", "bench", "train", "evaluate", "demo-data", "models", "export", "demo"):
        assert command in result.stdout


def test_scanner_cli_does_not_import_torch():
    code = (
        "import sys, dfscan.scanner.cli.app; print('torch' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_importing_main_module_runs_nothing():
    """``pkgutil.walk_packages`` and doc tools import every module: ``__main__`` must not run
    the CLI then, only under ``python -m``."""
    code = "import dfscan.scanner.__main__; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, "imported\n", "")
    version = [sys.executable, "-m", "dfscan.scanner", "--version"]
    out = subprocess.run(version, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("dfscan ")


TRAIN = ("--weights", "none", "--size", "32", "--epochs", "1", "--max-steps", "1", "--workers", "0")


def test_train_then_evaluate(tmp_path: Path):
    data = make_folder_dataset(tmp_path / "data")
    out = tmp_path / "run"
    result = run("train", data, "--out", out, "--input", "fft", "--no-augment", *TRAIN)
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "model.ckpt", weights_only=True)
    assert ckpt["train_config"]["augment"]["hflip"] is False
    json_path = tmp_path / "eval.json"
    result = run("evaluate", out / "model.ckpt", data, "--json", json_path, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "per generator" in result.stdout and "gan_a" in result.stdout
    assert json_path.is_file()


def test_augment_flags_reach_the_config(tmp_path: Path):
    data = make_folder_dataset(tmp_path / "data")
    out = tmp_path / "run"
    flags = ("--no-hflip", "--affine", "--four-patch", "--jpeg-prob", "0.5")
    result = run("train", data, "--out", out, *flags, *TRAIN)
    assert result.exit_code == 0, result.output
    aug = torch.load(out / "model.ckpt", weights_only=True)["train_config"]["augment"]
    assert (aug["hflip"], aug["vflip"], aug["affine"], aug["four_patch"]) == (
        False,
        True,
        True,
        True,
    )
    assert aug["jpeg_prob"] == 0.5 and aug["blur_prob"] == 0.1


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert text in " ".join(result.output.split()), result.output  # Rich wraps long lines


def test_split_options_overrides_only_the_settings_given():
    from dfscan.train.cli import split_options
    from dfscan.train.fit.config import setting_fields

    options = {f.name: f.cli_default for f in setting_fields()}
    options |= {"synth": "blur,jpeg", "epochs": 3, "workers": 0}
    settings, run = split_options(options)
    assert settings == {"synth": ("blur", "jpeg"), "epochs": 3}  # parsed; the unset left out
    assert run["workers"] == 0 and run["split"] is None and run["device"] == "auto"
    assert set(settings).isdisjoint(run)


def test_int8_float_stages_option():
    from dfscan.export.cli import stage_list

    assert stage_list("stem, layer1") == ("stem", "layer1")
    assert stage_list("none") == stage_list("") == ()


def test_missing_data_folder(tmp_path: Path):
    one_line_error(run("train", tmp_path / "nope", *TRAIN), "dataset folder not found")


def test_no_real_folder(tmp_path: Path):
    data = make_folder_dataset(tmp_path / "data")
    for f in (data / "real").iterdir():
        f.unlink()
    (data / "real").rmdir()
    one_line_error(run("train", data, *TRAIN), "no real images")


def test_too_few_images(tmp_path: Path):
    data = make_folder_dataset(tmp_path / "data", n_real=3, n_fake=1)
    one_line_error(run("train", data, "--out", tmp_path / "r", *TRAIN), "too few images")


def test_unknown_arch(tmp_path: Path):
    data = make_folder_dataset(tmp_path / "data")
    one_line_error(
        run("train", data, "--arch", "nope", "--out", tmp_path / "r", *TRAIN),
        "unknown architecture",
    )


@pytest.mark.parametrize("content", [b"", b"not a checkpoint"])
def test_evaluate_refuses_non_checkpoints(tmp_path: Path, content: bytes):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(content)
    data = make_folder_dataset(tmp_path / "data")
    one_line_error(run("evaluate", bad, data), "not a readable checkpoint")


def test_evaluate_refuses_a_foreign_torch_file(tmp_path: Path):
    path = tmp_path / "model.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    one_line_error(run("evaluate", path, tmp_path), "not a dfscan checkpoint")


def test_debug_shows_the_traceback(tmp_path: Path):
    result = run("--debug", "train", tmp_path / "nope", *TRAIN)
    assert result.exit_code != 0 and result.exception is not None


def test_models_lists_the_registry():
    result = run("models")
    assert result.exit_code == 0
    for arch in ("resnet50", "efficientnet_v2_s", "efficientnet_lite0"):
        assert arch in result.stdout


def test_demo_data_writes_and_refuses_foreign_folders(tmp_path: Path):
    out = tmp_path / "demo"
    result = run("demo-data", out, "--n-real", "16", "--size", "32")
    assert result.exit_code == 0, result.output
    assert len(list((out / "real").glob("*.png"))) == 16
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    one_line_error(run("demo-data", foreign), "is not empty and is not a dfscan demo dataset")
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_hint_with_an_extra_is_printed_as_written(tmp_path, monkeypatch):
    """'[train]' in a hint is an extra's name, not Rich markup: it must survive printing."""
    from dfscan.scanner.cli.support import report_errors
    from dfscan.scanner.errors import ModelError

    @report_errors
    def command() -> None:
        raise ModelError("needs weights", hint='pip install "dfscan[synth]"')

    import typer

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 4
    assert 'pip install "dfscan[synth]"' in result.output

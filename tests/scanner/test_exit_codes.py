"""One table of exit codes (``errors.ExitCode``): the error classes, the commands' exits and
the "Exit codes: …" sentences of their help all come from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.scanner import errors
from dfscan.scanner.cli.app import app
from dfscan.scanner.cli.calibrate import CALIBRATE_EXIT_CODES
from dfscan.scanner.cli.scan import SCAN_EXIT_CODES
from dfscan.scanner.errors import DfscanError, ExitCode, exit_codes_help
from dfscan.scanner.serve.cli import SERVE_EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# the commands whose help has an "Exit codes:" sentence, and the codes they declare
DECLARED = {"scan": SCAN_EXIT_CODES, "calibrate": CALIBRATE_EXIT_CODES, "serve": SERVE_EXIT_CODES}


def test_the_codes():
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0,
        "FAKE_FOUND": 1,
        "USAGE": 2,
        "MISSING_EXTRA": 3,
        "MODEL": 4,
        "DEVICE": 5,
        "PARITY": 6,
        "BUG": 70,
        "INTERRUPTED": 130,
    }
    assert ExitCode.INPUT is ExitCode.USAGE and ExitCode.FAILED_RUNS is ExitCode.FAKE_FOUND
    assert set(errors.EXIT_MEANINGS) == set(ExitCode)  # every code has a default meaning


def _error_classes() -> list[type[DfscanError]]:
    pytest.importorskip("torch")
    import dfscan.export.parity  # noqa: F401  (ParityError)

    found, todo = [], [DfscanError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_exits_with_a_member_of_the_enum():
    classes = {cls.__name__: cls for cls in _error_classes()}
    assert {"DataError", "ModelError", "DeviceError", "MissingExtra", "ParityError"} <= set(classes)
    for cls in classes.values():
        assert isinstance(cls.exit_code, ExitCode), cls
    assert classes["ParityError"].exit_code is ExitCode.PARITY
    assert classes["DeviceError"].exit_code is ExitCode.DEVICE


def _help(command: str) -> str:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def _listed(help_text: str) -> list[int]:
    """The codes the help's "Exit codes: …" sentence lists, in its order."""
    sentence = help_text.split("Exit codes: ", 1)[1].split("╭")[0]  # up to the first panel
    return [int(m) for m in re.findall(r"(?:^|; )(\d+) ", sentence)]


@pytest.mark.parametrize("command", DECLARED)
def test_the_help_lists_every_code_the_command_can_return(command: str):
    codes = DECLARED[command]
    assert all(isinstance(c, ExitCode) for c in codes)
    assert _listed(_help(command)) == sorted(set(codes))


def test_every_code_is_in_the_help_of_a_command_that_returns_it():
    declared = {code for codes in DECLARED.values() for code in codes}
    assert declared | {ExitCode.PARITY} == set(ExitCode)
    pytest.importorskip("dfscan.export.cli")
    export = _help("export")
    assert f"fails (exit {ExitCode.PARITY.value})" in export  # --ap-tolerance
    assert f"Exit {ExitCode.FAKE_FOUND.value} if an image is flagged fake" in _help("scan")


def test_exit_codes_help_renders_in_order_with_notes():
    text = exit_codes_help(
        [ExitCode.INTERRUPTED, ExitCode.OK, ExitCode.DEVICE], {ExitCode.OK: "stopped"}
    )
    assert text == "Exit codes: 0 stopped; 5 device unavailable; 130 interrupted."


def test_scan_returns_the_codes_it_lists(tmp_path: Path, brightness_onnx: Path):
    from ..conftest import write_image

    missing = runner.invoke(app, ["scan", str(tmp_path / "nope"), "-m", str(brightness_onnx)])
    assert missing.exit_code == ExitCode.INPUT, missing.output
    import numpy as np

    write_image(tmp_path / "data" / "real" / "a.png", np.full((8, 8, 3), 250, np.uint8))
    args = ["scan", str(tmp_path / "data"), "-m", str(brightness_onnx), "-q", "--device", "cpu"]
    flagged = runner.invoke(app, [*args, "--threshold", "0.1", "--fail-on-fake"])
    assert flagged.exit_code == ExitCode.FAKE_FOUND, flagged.output
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"not a model")
    model = runner.invoke(app, [*args[:3], str(bad_model), "-q", "--device", "cpu"])
    assert model.exit_code == ExitCode.MODEL, model.output


# A literal status where the enum should be: typer.Exit(3), sys.exit(70), exit_code = 4.
LITERAL_EXIT = re.compile(r"(?:typer\.Exit|sys\.exit|SystemExit)\(\s*\d|exit_code\s*=\s*\d")


def test_no_command_exits_with_a_literal_number():
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("scanner", "train", "export")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if LITERAL_EXIT.search(line)
    ]
    assert offenders == []

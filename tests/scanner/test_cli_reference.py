from pathlib import Path

import pytest

from dfscan.scanner.cli.reference import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_in_docs_is_current():
    pytest.importorskip("torch")  # train/export commands are part of the reference
    pytest.importorskip("onnx")
    assert DOC.read_text(encoding="utf-8") == reference(), (
        "docs/cli.md is stale: python -m dfscan.scanner.cli.reference > docs/cli.md"
    )


def test_every_command_and_option_is_in_the_reference():
    text = reference()
    for command in ("scan", "calibrate", "models", "bench", "report"):
        assert f"## `dfscan {command}`" in text
    assert "`--target-fpr`" in text and "`--fail-on-fake`" in text and "`FOLDERS`" in text

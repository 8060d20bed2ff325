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


def test_no_help_text_loses_brackets_to_rich_markup():
    """Help is rendered by Rich: ``[export]`` or ``[the recipe's]`` would vanish from the
    terminal (and from the reference, which shows what the terminal shows) unless escaped."""
    import typer
    from rich.text import Text

    from dfscan.scanner.cli.app import app

    group = typer.main.get_group(app)
    ctx = group.context_class(group, info_name="dfscan")
    eaten = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        for text in texts:
            meant = text.replace("\\[", "[")
            if Text.from_markup(text).plain != meant:
                eaten.append(f"{name}: {text}")
    assert not eaten, "\n".join(eaten)

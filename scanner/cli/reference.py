"""The CLI reference (docs/cli.md), generated from the Typer app so it cannot drift.

``python -m dfscan.scanner.cli.reference > docs/cli.md`` writes it; a test compares the file
with a fresh rendering. It is built from click's parameter objects, not from Rich's help
screens, so the text does not depend on the terminal or on Rich's box drawing.
"""

from __future__ import annotations

import enum
from typing import Any

import typer
from rich.text import Text

HEADER = (
    "# CLI reference\n\n"
    "Generated from the commands themselves by `python -m dfscan.scanner.cli.reference > "
    "docs/cli.md` (a test checks that this file is current). `dfscan FOLDER …` is `dfscan scan "
    "FOLDER …`. Commands of the training and export parts appear when their extras are "
    "installed.\n"
)


# click's objects are typed as Any: typer 0.29 builds its commands on its own vendored copy of
# click, whose classes are not those of the click package.


def _default(param: Any) -> str:
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return ""
    value: Any = param.default
    if value is None or callable(value) or value in ((), ""):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return f"`{value}`"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{(param.name or '').upper()}`" + ("" if param.required else " (optional)")
    opts = [*param.opts, *getattr(param, "secondary_opts", [])]
    return " ".join(f"`{o}`" for o in opts)


def shown(text: str | None) -> str:
    """The text as the terminal shows it: Rich markup applied, ``\\[`` escapes undone."""
    return Text.from_markup(text or "").plain


def _cell(text: str | None) -> str:
    return " ".join(shown(text).split()).replace("|", "\\|")


def command_section(name: str, command: Any, parent: Any) -> str:
    ctx = command.context_class(command, info_name=name, parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `dfscan {name}`", "", "```", f"dfscan {name} {usage}".rstrip(), "```", ""]
    lines += [shown(command.help).strip(), ""]
    params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument / option | default | what it does |", "|---|---|---|"]
        for p in params:
            help_text = getattr(p, "help", None) or ""
            lines.append(f"| {_names(p)} | {_default(p)} | {_cell(help_text)} |")
        lines.append("")
    return "\n".join(lines)


def reference() -> str:
    from .app import app

    group: Any = typer.main.get_group(app)
    ctx = group.context_class(group, info_name="dfscan")
    sections = [HEADER]
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            sections.append(command_section(name, command, ctx))
    return "\n".join(sections)


if __name__ == "__main__":
    print(reference(), end="")

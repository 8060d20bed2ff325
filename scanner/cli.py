"""The ``dfscan`` command line.

Commands of the optional parts (training, export) are plugged in through the
``dfscan.commands`` entry-point group, so this module imports neither torch nor onnx and
``dfscan --help`` stays instant.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

from dfscan.scanner import __version__
from dfscan.scanner.cli_support import set_debug

app = typer.Typer(
    name="dfscan",
    help="Tell real photos from generated images: train detectors, export them, scan folders.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dfscan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    set_debug(debug)


def _load_plugins() -> None:
    for ep in sorted(entry_points(group="dfscan.commands"), key=lambda e: e.name):
        ep.load()(app)


_load_plugins()


def main() -> None:
    app()

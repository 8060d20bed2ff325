"""The ``dfscan`` command line.

Commands of the optional parts (training, export) are plugged in through the
``dfscan.commands`` entry-point group, so this module imports neither torch nor onnx; numpy,
Pillow and ONNX Runtime are imported inside the commands, so ``dfscan --help`` stays instant.

An exception that is not a :class:`DfscanError` is a bug: it ends the command with one line
and exit code 70 (``--debug``: the traceback), never a silent success.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from importlib.metadata import PackageNotFoundError, distribution
from typing import Annotated

import typer

from .. import __version__
from ..errors import ExitCode, first_line
from ..serve.cli import SERVE_HELP, serve
from .bench import bench
from .calibrate import CALIBRATE_HELP, calibrate
from .models import models
from .report import report
from .scan import SCAN_HELP, scan
from .support import debug_enabled, err_console, set_debug

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


app.command("scan", help=SCAN_HELP)(scan)
app.command("bench")(bench)
app.command("report")(report)
app.command("calibrate", help=CALIBRATE_HELP)(calibrate)
app.command("serve", help=SERVE_HELP)(serve)
app.command("models")(models)


def _load_plugins() -> None:
    """Add the commands that dfscan's own distribution registers in ``dfscan.commands``.

    Only that distribution's entry points are read: ``entry_points(group=...)`` parses those
    of every installed distribution (150 in a full install; about 40 ms of CPU at each start)
    to find the two that dfscan itself declares.
    """
    try:
        found = distribution("dfscan").entry_points.select(group="dfscan.commands")
    except PackageNotFoundError:  # a source tree that was never installed: no plug-ins
        return
    for ep in sorted(found, key=lambda e: e.name):
        ep.load()(app)


_load_plugins()

_ROOT_OPTIONS = ("--debug",)  # options of the root callback that may precede a command
_ROOT_EXITS = ("--help", "--version")


def route(argv: Sequence[str], commands: Collection[str]) -> list[str]:
    """Send arguments that start with no known command to ``scan``.

    ``dfscan photos/ -m m.onnx`` is ``dfscan scan photos/ -m m.onnx``, while ``dfscan train``
    (or any command added later) stays itself. A folder named like a command needs
    ``dfscan scan NAME``.
    """
    args = list(argv)
    for i, arg in enumerate(args):
        if arg in _ROOT_OPTIONS:
            continue
        if arg in commands or arg in _ROOT_EXITS:
            return args
        return [*args[:i], "scan", *args[i:]]
    return args


EXIT_BUG = ExitCode.BUG  # an internal error, distinct from every user error


def command_names() -> list[str]:
    """The commands' names, read from the registrations (building the click group is what
    ``app()`` does next; doing it twice doubled the start-up work)."""
    names = [
        c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))
        for c in app.registered_commands
    ]
    return names + [g.name for g in app.registered_groups if g.name]


def main() -> None:
    try:
        app(args=route(sys.argv[1:], command_names()))
    except Exception as exc:  # not a DfscanError (report_errors handles those): a bug
        if debug_enabled():
            raise
        from rich.markup import escape

        what = escape(f"{type(exc).__name__}: {first_line(exc)}")
        err_console.print(f"[bold red]error:[/] internal error (a bug): {what}", highlight=False)
        err_console.print("[dim]hint:[/] run again with --debug for the traceback")
        sys.exit(ExitCode.BUG)

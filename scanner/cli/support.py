"""What every dfscan command shares: consoles, the error edge and the ``--device`` option.

Domain errors (:class:`DfscanError`) become one red line plus a hint and a non-zero exit code
(:class:`~dfscan.scanner.errors.ExitCode`); ``--debug`` or ``DFSCAN_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import DeviceError, DfscanError, ExitCode

P = ParamSpec("P")
R = TypeVar("R")

console = Console()  # results
err_console = Console(stderr=True)  # progress, warnings, errors


def debug_enabled() -> bool:
    return os.environ.get("DFSCAN_DEBUG", "").lower() not in ("", "0", "false", "no")


def set_debug(enabled: bool) -> None:
    if enabled:
        os.environ["DFSCAN_DEBUG"] = "1"


def report_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn DfscanError (and a missing optional dependency) into a clean exit."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DfscanError as exc:
            if debug_enabled():
                raise
            # messages are plain text: "[train]" in a hint is an extra's name, not markup
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
            if exc.hint:
                err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            if debug_enabled() or exc.name not in EXTRAS:
                raise
            need = escape(f"this command needs {exc.name}, not installed")
            err_console.print(f"[bold red]error:[/] {need}")
            hint = escape(f'pip install "dfscan[{EXTRAS[exc.name]}]"')
            err_console.print(f"[dim]hint:[/] {hint}")
            raise typer.Exit(ExitCode.MISSING_EXTRA) from None

    return wrapper


def device_value(value: str) -> str:
    """``--device`` of every command: the grammar of
    :func:`dfscan.scanner.model.runtime.parse_device`
    (``auto``, ``cpu``, ``cuda``, ``cuda:N``); anything else is a usage error (exit 2) before the
    command starts. The value stays the string the user gave."""
    from ..model.runtime import parse_device  # light, but --help does not need it

    try:
        parse_device(value)
    except DeviceError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


DEVICE_METAVAR = "<auto|cpu|cuda[:N]>"
DEVICE_GRAMMAR: dict[str, Any] = {"parser": device_value, "metavar": DEVICE_METAVAR}
"""The ``typer.Option`` keywords of a ``--device`` option (``from_field(..., **DEVICE_GRAMMAR)``
for one built from a settings field)."""


def device_option(help: str, metavar: str | None = DEVICE_METAVAR) -> Any:
    """A ``--device`` option (annotate it ``str``, default ``"auto"``) that takes the runtime's
    device grammar; ``metavar=None`` shows typer's ``<str>`` (the training commands, whose
    option tables a wider type column would rewrap)."""
    return typer.Option(help=help, parser=device_value, metavar=metavar)


def extras_of(requirements: list[str]) -> dict[str, str]:
    """Import name -> the extra that installs it, from ``Requires-Dist`` lines: the first extra
    that lists the distribution itself (``dfscan[train]`` references and dev tools aside)."""
    found: dict[str, str] = {}
    for line in requirements:
        match = _EXTRA_REQUIREMENT.match(line)
        if match is None or match["extra"] == "dev":
            continue
        dist = match["dist"].lower()
        if dist != "dfscan":
            found.setdefault(_IMPORT_NAMES.get(dist, dist.replace("-", "_")), match["extra"])
    return found


def _installed_extras() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        requirements = metadata("dfscan").get_all("Requires-Dist") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        return dict(FALLBACK_EXTRAS)
    return extras_of(requirements) or dict(FALLBACK_EXTRAS)


# a distribution whose import name is not its own (with - as _)
_IMPORT_NAMES = {"scikit-learn": "sklearn", "scikit-image": "skimage", "c2pa-python": "c2pa"}
_EXTRA_REQUIREMENT = re.compile(
    r"^\s*(?P<dist>[A-Za-z0-9][A-Za-z0-9._-]*).*;.*\bextra\s*==\s*[\"'](?P<extra>[^\"']+)[\"']"
)
FALLBACK_EXTRAS = {  # what the metadata says for the heavy ones, if it cannot be read
    "torch": "train",
    "torchvision": "train",
    "matplotlib": "train",
    "sklearn": "train",
    "skimage": "train",
    "onnx": "export",
    "onnxscript": "export",
}
EXTRAS = _installed_extras()

"""Errors the user can act on, and the exit codes every dfscan command ends with.

Raised anywhere in dfscan and caught at the CLI edge, where they become one red line, an
optional hint and a non-zero exit code instead of a traceback. :class:`ExitCode` is the one
table of those codes: the error classes, the commands' ``raise typer.Exit(...)`` and the
"Exit codes: …" paragraphs of their ``--help`` (:func:`exit_codes_help`) all take them from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum


class ExitCode(IntEnum):
    """What a dfscan command's exit status means, for pipelines and scripts."""

    OK = 0
    FAKE_FOUND = 1  # scan --fail-on-fake flagged an image
    FAILED_RUNS = 1  # the same status from train's experiments: every run (or fold) failed
    USAGE = 2  # bad arguments: click's own usage errors exit 2 as well
    INPUT = 2  # input (folders, files) that cannot be used: the same status as a usage error
    MISSING_EXTRA = 3  # an optional dependency is not installed
    MODEL = 4  # a model, checkpoint or weights file cannot be used
    DEVICE = 5  # the requested device (e.g. CUDA) cannot be used
    PARITY = 6  # dfscan export --check: the exported graph disagrees with the model
    BUG = 70  # sysexits' EX_SOFTWARE: an internal error, distinct from every user error
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


# What each code means when a command's help says nothing more specific about it.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAKE_FOUND: "an image was flagged fake",
    ExitCode.USAGE: "bad arguments",
    ExitCode.MISSING_EXTRA: "an optional extra is missing",
    ExitCode.MODEL: "unusable model",
    ExitCode.DEVICE: "device unavailable",
    ExitCode.PARITY: "the exported graph failed its parity check",
    ExitCode.BUG: "internal error (a bug; --debug shows the traceback)",
    ExitCode.INTERRUPTED: "interrupted",
}


def exit_codes_help(codes: Iterable[ExitCode], notes: Mapping[ExitCode, str] | None = None) -> str:
    """The "Exit codes: …" sentence of a command's help: ``codes`` (the ones it can return) in
    ascending order, each with the command's own note or else :data:`EXIT_MEANINGS`."""
    notes = notes or {}
    parts = [f"{code.value} {notes.get(code, EXIT_MEANINGS[code])}" for code in sorted(set(codes))]
    return "Exit codes: " + "; ".join(parts) + "."


class DfscanError(Exception):
    """A problem with the user's input or environment, not a bug in dfscan.

    Exit codes tell pipelines what went wrong (:class:`ExitCode`): 2 input (folders, files,
    arguments, the same as a command-line usage error), 3 a missing optional dependency, 4 the
    model, 5 the device.
    """

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type): libraries such as ONNX Runtime
    and torch put whole stack dumps in their messages; one line is what the user needs."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class DataError(DfscanError):
    """The dataset folder or an image in it cannot be used."""


class ModelError(DfscanError):
    """A model, checkpoint or weights file cannot be used."""

    exit_code = ExitCode.MODEL


class DeviceError(DfscanError):
    """The requested device (e.g. CUDA) cannot be used."""

    exit_code = ExitCode.DEVICE


class MissingExtra(DfscanError):
    """An optional dependency of this feature is not installed (exit 3, as elsewhere)."""

    exit_code = ExitCode.MISSING_EXTRA

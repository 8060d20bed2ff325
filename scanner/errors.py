"""Errors the user can act on.

Raised anywhere in dfscan and caught at the CLI edge, where they become one red line, an
optional hint and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class DfscanError(Exception):
    """A problem with the user's input or environment, not a bug in dfscan.

    Exit codes tell pipelines what went wrong: 2 input (folders, files, arguments, the same as
    a command-line usage error), 3 a missing optional dependency, 4 the model, 5 the device.
    """

    exit_code = 2

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

    exit_code = 4


class DeviceError(DfscanError):
    """The requested device (e.g. CUDA) cannot be used."""

    exit_code = 5


class MissingExtra(DfscanError):
    """An optional dependency of this feature is not installed (exit 3, as elsewhere)."""

    exit_code = 3

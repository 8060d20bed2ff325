"""Dataclass fields that also say how a command line shows them: one home for each default.

A settings dataclass (``ScanOptions``, ``BenchSettings``, ``ExportSettings`` …) declares a field
with :func:`option`: its default, and in the field's metadata its help text and how the option
looks (names, metavar, bounds). :mod:`dfscan.scanner.cli.options` turns such a field into a
Typer option whose default *is* the field's, so the command line never restates one. This
module imports neither Typer nor anything heavy: any settings module, torch-free or not, can
declare its fields with it, and reading a default does not load the code that uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

OPTION = "option"  # the field-metadata key


@dataclass(frozen=True)
class OptionInfo:
    """How one field appears as a command-line option."""

    help: str
    flags: tuple[str, ...] = ()  # option names; default --field-name
    metavar: str | None = None
    min: float | None = None
    max: float | None = None
    show_default: bool | str = True
    cli_value: Callable[[Any], Any] | None = None  # field default -> option default ("1,8")


def option(default: Any = MISSING, *, factory: Any = MISSING, **info: Any) -> Any:
    """A dataclass field with its :class:`OptionInfo` (``help=`` and the rest as keywords)."""
    return dataclasses.field(
        default=default, default_factory=factory, metadata={OPTION: OptionInfo(**info)}
    )


@dataclass(frozen=True)
class OptionField:
    """One field of a settings dataclass as a command line sees it."""

    owner: type
    name: str
    default: Any  # the dataclass's own default (MISSING: a required option)
    info: OptionInfo

    @property
    def flags(self) -> tuple[str, ...]:
        return self.info.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def cli_default(self) -> Any:
        """The default as the option holds it (``(1, 8)`` may read ``"1,8"`` there)."""
        if self.default is MISSING or self.info.cli_value is None:
            return self.default
        return self.info.cli_value(self.default)


def option_field(owner: type, name: str) -> OptionField:
    """The field ``name`` of the dataclass ``owner``; it must have been declared by
    :func:`option` (a KeyError names the field otherwise)."""
    for f in dataclasses.fields(owner):
        if f.name == name:
            if OPTION not in f.metadata:
                raise KeyError(f"{owner.__name__}.{name} is not declared with option()")
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            return OptionField(owner, name, default, f.metadata[OPTION])
    raise KeyError(f"{owner.__name__} has no field {name!r}")


def option_fields(owner: type) -> list[OptionField]:
    """Every field of ``owner`` declared by :func:`option`, in declaration order."""
    return [option_field(owner, f.name) for f in dataclasses.fields(owner) if OPTION in f.metadata]

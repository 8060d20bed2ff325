"""Typer options made from settings-dataclass fields (:mod:`dfscan.scanner.fields`).

A command names, in its own signature and order, which parameters are fields of which
dataclass: ``batch_size: int = from_field(ScanOptions)``. :func:`with_field_options` then gives
each such parameter the field's default and a ``typer.Option`` built from the field's help,
names and bounds. The command keeps its own annotation (the type Typer parses, which mypy
checks in the body); the default and the help are the dataclass's, written nowhere else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Annotated, Any, TypeVar, get_origin

import typer
from rich.markup import escape

from ..fields import OptionField, option_field

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FromField:
    """A parameter default that stands for the field ``name`` of ``owner`` (see
    :func:`from_field`); ``extra``: further ``typer.Option`` keywords (a parser, a metavar)."""

    owner: type
    name: str | None
    extra: dict[str, Any]


def from_field(owner: type, name: str | None = None, **extra: Any) -> Any:
    """As a command parameter's default: "this option is ``owner``'s field of the same name"
    (or ``name``); ``extra`` goes to ``typer.Option`` as it is (the device grammar's parser)."""
    return FromField(owner, name, extra)


def typer_option(field: OptionField, **extra: Any) -> Any:
    """The ``typer.Option`` of one field (its default goes on the parameter, Annotated style)."""
    info = field.info
    # a field's help is plain text (``dfscan[export]``); Rich would read its brackets as markup
    options: dict[str, Any] = {"help": escape(info.help), "show_default": info.show_default}
    for key in ("min", "max", "metavar"):
        if getattr(info, key) is not None:
            options[key] = getattr(info, key)
    options.update(extra)
    return typer.Option(*field.flags, **options)


def resolve(parameter: inspect.Parameter) -> OptionField | None:
    """The field a parameter's ``from_field`` default names (None: an ordinary parameter)."""
    marker = parameter.default
    if not isinstance(marker, FromField):
        return None
    return option_field(marker.owner, marker.name or parameter.name)


def with_field_options(command: F) -> F:
    """Turn every ``from_field`` parameter of ``command`` into its field's Typer option and
    default; a direct call gets the same defaults."""
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        field = resolve(parameter)
        if field is None:
            parameters.append(parameter)
            continue
        if get_origin(parameter.annotation) is Annotated:
            raise TypeError(f"{command.__name__}({parameter.name}): annotate it with a bare type")
        marker: FromField = parameter.default
        option = typer_option(field, **marker.extra)
        default = inspect.Parameter.empty if field.default is MISSING else field.cli_default
        parameters.append(
            parameter.replace(annotation=Annotated[parameter.annotation, option], default=default)
        )
    generated = signature.replace(parameters=parameters)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = generated.bind(*args, **kwargs)
        bound.apply_defaults()
        return command(*bound.args, **bound.kwargs)

    wrapper.__signature__ = generated  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]

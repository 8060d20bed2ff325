"""Options built from settings dataclasses: the command line's defaults and help are the fields'
(scan ↔ ScanOptions/RayOptions, bench ↔ BenchSettings, calibrate ↔ CalibrateSettings; export's
in tests/export)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from dfscan.scanner.bench.settings import BenchSettings
from dfscan.scanner.cli.app import app
from dfscan.scanner.cli.options import from_field, with_field_options
from dfscan.scanner.fields import OptionField, option, option_fields
from dfscan.scanner.scan.options import CalibrateSettings, RayOptions, ScanOptions
from dfscan.scanner.serve.settings import MIB, SERVE, ServeSettings

runner = CliRunner()


def click_options(command_name: str) -> dict[str, Any]:
    """The built command's click parameters by name (what --help and parsing use)."""
    group: Any = typer.main.get_group(app)
    command = group.get_command(group.make_context("dfscan", [command_name]), command_name)
    return {p.name: p for p in command.params}


def option_mismatches(command_name: str, *owners: type) -> list[str]:
    """Every option field of ``owners`` whose command-line option is missing or has another
    default or help than the field (empty: none drifted)."""
    params = click_options(command_name)
    problems = []
    for owner in owners:
        for field in option_fields(owner):
            param = params.get(field.name)
            where = f"{owner.__name__}.{field.name}"
            if param is None:
                problems.append(f"{where}: no --{field.name.replace('_', '-')} option")
            elif param.default != field.cli_default:
                problems.append(
                    f"{where}: option default {param.default!r} != {field.cli_default!r}"
                )
            elif Text.from_markup(param.help).plain != field.info.help:  # as the terminal shows
                problems.append(f"{where}: option help differs")
    return problems


@pytest.mark.parametrize(
    ("command_name", "owners"),
    [
        ("scan", (ScanOptions, RayOptions)),
        ("bench", (BenchSettings,)),
        ("calibrate", (CalibrateSettings,)),
        ("serve", (ServeSettings,)),
    ],
)
def test_the_options_defaults_and_help_are_the_dataclass_fields(command_name, owners):
    assert option_fields(owners[0])  # the dataclass does declare its options
    assert option_mismatches(command_name, *owners) == []


def test_a_drifted_default_is_caught(monkeypatch):
    """The check above fails when a field's default and its option's differ."""
    real = option_fields(ScanOptions)

    def drifted(owner: type) -> list[OptionField]:
        fields = real if owner is ScanOptions else []
        return [
            OptionField(f.owner, f.name, 7, f.info) if f.name == "batch_size" else f for f in fields
        ]

    monkeypatch.setattr(f"{__name__}.option_fields", drifted)
    assert option_mismatches("scan", ScanOptions) == [
        "ScanOptions.batch_size: option default 32 != 7"
    ]


@dataclass
class Toy:
    name: str = option(help="Required.")
    size: int = option(3, min=1, help="Side.", flags=("--size", "-s"))
    sizes: tuple[int, ...] = option(
        (1, 2), help="Sides.", cli_value=lambda v: ",".join(map(str, v))
    )


def test_a_generated_option_takes_the_fields_default_names_bounds_and_help():
    seen: dict[str, Any] = {}

    @with_field_options
    def command(
        name: str = from_field(Toy),
        size: int = from_field(Toy),
        sizes: str = from_field(Toy),
        other: int = 5,
    ) -> None:
        seen.update(name=name, size=size, sizes=sizes, other=other)

    toy = typer.Typer()
    toy.command()(command)
    assert runner.invoke(toy, ["--name", "x"]).exit_code == 0
    assert seen == {"name": "x", "size": 3, "sizes": "1,2", "other": 5}
    assert runner.invoke(toy, ["--name", "x", "-s", "4"]).exit_code == 0 and seen["size"] == 4
    assert runner.invoke(toy, ["--name", "x", "-s", "0"]).exit_code == 2  # min=1
    assert runner.invoke(toy, []).exit_code == 2  # no default: required
    help_text = runner.invoke(toy, ["--help"], terminal_width=200).output
    assert "Side." in help_text and "[default: 1,2]" in help_text
    command(name="direct")  # a direct call gets the same defaults
    assert seen == {"name": "direct", "size": 3, "sizes": "1,2", "other": 5}


def test_from_field_names_an_unknown_or_undeclared_field():
    with pytest.raises(KeyError, match="no field 'nope'"):

        @with_field_options
        def unknown(nope: int = from_field(Toy)) -> None: ...

    with pytest.raises(KeyError, match="not declared with option"):

        @with_field_options
        def undeclared(existing: str = from_field(ScanOptions)) -> None: ...


def test_calibrate_runs_with_the_settings_defaults():
    import inspect

    from dfscan.scanner.scan.calibrate import calibrate

    defaults = inspect.signature(calibrate).parameters
    for field in option_fields(CalibrateSettings):
        assert defaults[field.name].default == field.default, field.name


def test_the_server_runs_with_the_settings_defaults():
    from dfscan.scanner.serve.limits import Limits
    from dfscan.scanner.serve.service import Service

    limits = Limits()
    assert limits.max_body_bytes == int(SERVE.max_body_mb * MIB)
    assert (limits.max_files, limits.max_pixels) == (SERVE.max_files, SERVE.max_pixels)
    assert (limits.max_requests, limits.max_queued_images) == (
        SERVE.max_requests,
        SERVE.max_queued,
    )
    fields = {f.name: f.default for f in dataclasses.fields(Service)}
    assert (fields["max_batch"], fields["max_wait_ms"]) == (SERVE.max_batch, SERVE.max_wait_ms)

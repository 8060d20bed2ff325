"""``dfscan export`` and ``export_checkpoint`` take their defaults from ExportSettings alone."""

from __future__ import annotations

import inspect
from dataclasses import fields

from dfscan.export.exporter import export_checkpoint
from dfscan.export.settings import DEFAULTS, ExportSettings, stage_list, stage_text

from ..scanner.test_cli_options import option_mismatches


def test_the_export_options_are_the_settings_fields():
    assert option_mismatches("export", ExportSettings) == []


def test_export_checkpoint_defaults_are_the_settings():
    parameters = inspect.signature(export_checkpoint).parameters
    for field in fields(ExportSettings):
        assert parameters[field.name].default == getattr(DEFAULTS, field.name), field.name


def test_the_stage_list_reads_back_what_it_shows():
    assert stage_list(stage_text(DEFAULTS.int8_float_stages)) == DEFAULTS.int8_float_stages
    assert stage_list(stage_text(())) == ()

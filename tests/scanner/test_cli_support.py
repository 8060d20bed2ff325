"""The error edge's extras table comes from the package metadata, which is pyproject's."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from dfscan.scanner.cli import support as cli_support
from dfscan.scanner.cli.support import EXTRAS, FALLBACK_EXTRAS, extras_of

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture(scope="module")
def optional_dependencies() -> dict[str, list[str]]:
    if sys.version_info < (3, 11):
        pytest.skip("reading pyproject.toml needs tomllib")
    import tomllib

    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]


def test_extras_match_pyproject(optional_dependencies) -> None:
    lines = [
        f"{req.split(';')[0].strip()}; extra == {extra!r}"
        for extra, reqs in optional_dependencies.items()
        for req in reqs
    ]
    assert extras_of(lines) == EXTRAS
    installed = importlib.metadata.metadata("dfscan").get_all("Provides-Extra")
    assert set(installed) == set(optional_dependencies)  # the install is not stale


def test_the_heavy_imports_name_their_extra() -> None:
    assert FALLBACK_EXTRAS.items() <= EXTRAS.items()
    assert (EXTRAS["sklearn"], EXTRAS["onnx"], EXTRAS["c2pa"]) == ("train", "export", "provenance")
    assert "pytest" not in EXTRAS and "dfscan" not in EXTRAS  # dev tools, self-references


def test_without_metadata_the_fallback_serves(monkeypatch) -> None:
    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "metadata", missing)
    assert cli_support._installed_extras() == FALLBACK_EXTRAS

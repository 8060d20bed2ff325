"""The wheel holds every subpackage: setuptools' explicit ``packages`` list (needed for the
package-dir mapping) silently leaves out a folder it does not name."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dfscan.scanner": "scanner", "dfscan.train": "train", "dfscan.export": "export"}


def test_every_package_folder_is_listed() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS
    folders = {
        ".".join([package, *init.parent.relative_to(ROOT / folder).parts])
        for package, folder in FOLDERS.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert len(folders) > len(FOLDERS)  # the subpackages were found
    assert sorted(setuptools["packages"]) == sorted(folders)

"""The public facades: every name a package's ``__all__`` promises resolves, and naming the
package costs nothing (``dfscan --help`` imports them all)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"scanner": "dfscan.scanner", "train": "dfscan.train", "export": "dfscan.export"}
# every package of the three parts (the folders with an __init__.py)
FACADES = sorted(
    ".".join([package, *init.parent.relative_to(ROOT / folder).parts])
    for folder, package in PARTS.items()
    for init in (ROOT / folder).rglob("__init__.py")
)


@pytest.mark.parametrize("package", FACADES)
def test_every_exported_name_resolves(package: str) -> None:
    if package.startswith(("dfscan.train", "dfscan.export")):
        pytest.importorskip("torch")
    if package == "dfscan.scanner.serve":
        pytest.importorskip("fastapi")
    module = importlib.import_module(package)
    assert module.__all__, f"{package} names no entry point"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = module.no_such_name


def test_importing_the_facades_loads_no_heavy_module() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {p}\n" for p in FACADES if p != "dfscan.scanner.cli")
        + "heavy = {'numpy', 'PIL', 'onnxruntime', 'torch', 'onnx'} & set(sys.modules)\n"
        + "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

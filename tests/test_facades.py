"""The public facades: every name a package's ``__all__`` promises resolves, and naming the
package costs nothing (``dfscan --help`` imports them all)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

FACADES = [
    "dfscan.scanner",
    "dfscan.scanner.model",
    "dfscan.scanner.scan",
    "dfscan.scanner.provenance",
    "dfscan.scanner.bench",
    "dfscan.scanner.cli",
    "dfscan.train",
    "dfscan.train.models",
    "dfscan.train.data",
    "dfscan.train.fit",
    "dfscan.train.experiments",
    "dfscan.train.holdout",
    "dfscan.export",
]


@pytest.mark.parametrize("package", FACADES)
def test_every_exported_name_resolves(package: str) -> None:
    if package.startswith(("dfscan.train", "dfscan.export")):
        pytest.importorskip("torch")
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

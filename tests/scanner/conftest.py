"""The scanner's tests also run in the base install (``pip install .``: no torch, no onnx; see
``.ci/run``). There, a test module that needs an extra to import is reported as skipped, with
the module it lacks, instead of failing collection: ``pytest tests/scanner`` is the whole
base-install run, with no hand-kept list of files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

BASE_INSTALL = os.environ.get("DFSCAN_BASE_INSTALL") == "1"
# What the extras bring; a test needing anything else missing is a real failure.
EXTRAS_ONLY = frozenset(
    {"torch", "torchvision", "onnx", "onnxscript", "timm", "open_clip", "sklearn", "skimage"}
    | {"matplotlib", "scipy", "ray", "fsspec", "s3fs", "moto", "fastapi", "httpx", "c2pa"}
)


class _BaseInstallModule(pytest.Module):
    def _getobj(self) -> Any:
        try:
            return super()._getobj()
        except self.CollectError as error:
            missing = error.__context__
            if isinstance(missing, ModuleNotFoundError):
                top = (missing.name or "").partition(".")[0]
                if top in EXTRAS_ONLY:
                    reason = f"needs the full install ({top} is not in the base install)"
                    raise pytest.skip.Exception(reason, allow_module_level=True) from None
            raise


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if BASE_INSTALL and module_path.name.startswith("test_"):
        return _BaseInstallModule.from_parent(parent, path=module_path)
    return None

"""TorchScript of the exported module: the same input and outputs, loadable with torch alone.

Traced rather than scripted: the graph is a fixed-size feed-forward net, and tracing records
the matmul FFT and the static padding of the backbones as plain tensor ops. The dfscan
metadata travels inside the archive as an extra file (``dfscan.json``), readable with
``torch.jit.load(path, _extra_files={"dfscan.json": ""})``.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from dfscan.scanner.model.meta import ModelMeta

from .graph_module import ExportedDetector, example_batch
from .settings import InputDType

EXTRA_FILE = "dfscan.json"


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    # torch.jit is deprecated in favour of torch.export, and tracing warns about the Python
    # shape checks it freezes (the input size is fixed by design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_torchscript(
    module: ExportedDetector, size: int, dtype: InputDType, meta: ModelMeta, path: str | Path
) -> int:
    """Trace, save atomically with the metadata inside; returns the file size."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    extra = {EXTRA_FILE: json.dumps(meta.to_props(), sort_keys=True)}
    with quiet_jit():
        traced = torch.jit.trace(module, (example_batch(size, dtype),), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files=extra)
    os.replace(tmp, path)
    return path.stat().st_size


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, ModelMeta]:
    extra = {EXTRA_FILE: ""}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), ModelMeta.from_props(json.loads(extra[EXTRA_FILE]), str(path))

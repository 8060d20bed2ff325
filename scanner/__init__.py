"""dfscan's torch-free runtime: the detector, the scanner, provenance, bench and the CLI.

This package is the base install: it must never import torch or onnx. Library users import the
facade below (``from dfscan.scanner import Detector, ScanOptions, run_scan``); the subpackages
hold the rest: ``model`` (spec, preprocessing, ONNX Runtime, the built-in detector), ``scan``
(discovery, engines, reports, calibration), ``provenance``, ``bench``, ``serve`` and ``cli``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .lazy import lazy_attributes

try:
    __version__ = version("dfscan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from .errors import DfscanError, ExitCode
    from .model.builtin import builtin_model
    from .model.detector import Detector
    from .model.spec import DetectorSpec
    from .provenance.read import read_provenance
    from .scan.options import ScanOptions
    from .scan.run import ScanResult, run_scan

__all__ = [
    "Detector",
    "DetectorSpec",
    "DfscanError",
    "ExitCode",
    "ScanOptions",
    "ScanResult",
    "__version__",
    "builtin_model",
    "read_provenance",
    "run_scan",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "Detector": ".model.detector",
        "DetectorSpec": ".model.spec",
        "DfscanError": ".errors",
        "ExitCode": ".errors",
        "ScanOptions": ".scan.options",
        "ScanResult": ".scan.run",
        "builtin_model": ".model.builtin",
        "read_provenance": ".provenance.read",
        "run_scan": ".scan.run",
    },
)

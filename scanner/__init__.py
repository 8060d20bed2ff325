"""dfscan's torch-free runtime: preprocessing, the ONNX Runtime scanner and the CLI.

This package is the base install: it must never import torch or onnx.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dfscan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

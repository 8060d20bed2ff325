"""Package facades that import on first use.

A subpackage's ``__init__`` names its entry points, but importing any module of the package runs
that ``__init__``: were the names imported eagerly, ``dfscan --help`` would load ONNX Runtime,
NumPy and (through the train plugin) torch. PEP 562's module ``__getattr__`` defers each import to
the first attribute access; the ``TYPE_CHECKING`` imports beside it keep type checkers exact.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module path
    relative to the package, such as ``".detector"``) when ``name`` is first read."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(module, package), name)

    return __getattr__

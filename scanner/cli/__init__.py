"""The ``dfscan`` command line: the Typer app, one module per command, and the shared terminal
helpers (consoles, errors at the edge, the device option).

``app`` and ``main`` load on first use: ``serve/cli.py`` imports ``cli.support``, and an eager
``from .app import app`` here would import every command (``serve`` included) in the middle of
that import, a cycle that Ray Serve's replicas (which load ``serve.cli`` alone) fall into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import app, main

__all__ = ["app", "main"]

__getattr__ = lazy_attributes(__name__, {"app": ".app", "main": ".app"})

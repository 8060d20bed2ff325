"""The ``dfscan`` command line: the Typer app, one module per command, and the shared terminal
helpers (consoles, errors at the edge, the device option)."""

from .app import app, main

__all__ = ["app", "main"]

"""``dfscan serve``: the scanner behind an HTTP API and a web page (the ``[serve]`` extra).

A third front-end over the scan's runtime (decode, spec, ONNX Runtime session, rows): the
FastAPI app (:func:`create_app` in ``app``) answers ``POST /v1/scan`` with one scan row per
image; a :class:`~dfscan.scanner.serve.batcher.Batcher` coalesces concurrent requests into ORT
batches; :class:`~dfscan.scanner.serve.service.Service` holds the model, limits and key;
``cli`` is the Typer command; ``load`` a load generator for measuring it.

Importing this package imports no web framework: FastAPI and uvicorn are imported by the
command, after checking that the extra is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]

__getattr__ = lazy_attributes(__name__, {"create_app": ".app"})  # FastAPI only when wanted

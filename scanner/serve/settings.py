"""``dfscan serve``'s batching and limits: each default and its help written once.

:class:`~dfscan.scanner.serve.limits.Limits`, :class:`~dfscan.scanner.serve.service.Service`
and the command line all take their defaults from :data:`SERVE`. Light (no Pillow, no FastAPI),
so ``dfscan --help`` reads them without loading the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import option

MIB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = option(32, min=1, help="Most images per ONNX Runtime batch.")
    max_wait_ms: float = option(
        5.0, min=0.0, help="Most milliseconds an image waits for others to fill a batch."
    )
    max_body_mb: float = option(32.0, min=0.001, help="Largest request body, in MiB.")
    max_files: int = option(64, min=1, help="Most images in one request.")
    max_pixels: int = option(
        100_000_000, min=1, help="Largest image (width × height, read from its header)."
    )
    max_requests: int = option(
        64, min=1, help="Most /v1/scan requests handled at once (more: 429)."
    )
    max_queued: int = option(1024, min=1, help="Most images between upload and answer (more: 503).")


SERVE = ServeSettings()

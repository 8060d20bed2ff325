"""What one server accepts, and the checks that need no web framework.

Every limit bounds memory: a request body is held in memory (never spooled to disk) up to
``max_body_bytes``; at most ``max_files`` images per request; at most ``max_requests``
requests are handled at once (the next gets 429) and at most ``max_queued_images`` images are
admitted between upload and score (a request that would pass it gets 503). So the server holds
at most ``max_requests × max_body_bytes`` of uploads, plus ``max_queued_images`` prepared crops,
whatever the load. An image's header is read before its pixels: one over ``max_pixels`` is
refused (a result with an error, as a decompression bomb is a row with an error in a scan),
without decoding it.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
from dataclasses import dataclass

from PIL import Image

from ..errors import DataError
from .settings import MIB, SERVE


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = int(SERVE.max_body_mb * MIB)  # one request's body (all its files)
    max_files: int = SERVE.max_files  # images in one request
    max_pixels: int = SERVE.max_pixels  # width × height of one image, read from its header
    max_requests: int = SERVE.max_requests  # /v1/scan requests handled at once; more: 429
    max_queued_images: int = SERVE.max_queued  # admitted and not yet scored; more: 503

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_files",
            "max_pixels",
            "max_requests",
            "max_queued_images",
        ):
            if getattr(self, name) < 1:
                raise DataError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_files > self.max_queued_images:
            raise DataError("max-files cannot exceed max-queued-images (no request could pass)")


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels (DataError).

    Only the header is read (Pillow opens lazily). A file Pillow cannot even open is left to
    the decoder, which turns it into the same "not a readable image" error a scan gives.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:  # over Pillow's own (higher) limit
        raise DataError(f"refused, possible decompression bomb: {exc}") from exc
    except Exception:
        return
    if width * height > max_pixels:
        raise DataError(
            f"refused: {width}×{height} pixels is over this server's limit of "
            f"{max_pixels:,} (--max-pixels)"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def key_matches(given: str | None, key: str) -> bool:
    """Constant-time comparison of the key a client sent with the server's."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))

"""Scan sources beyond local folders: fsspec URIs (``s3://bucket/prefix``, ``gs://…``,
``file://…``), listed as a stream and read as bytes.

A file's generator is its first-level folder under the given prefix, as for local folders
(files directly under it: ``(root)``). Listing walks one directory at a time, in sorted order,
so no more than one directory's names are held at once. fsspec (and s3fs/gcsfs) come with the
``[ray]`` extra; they are imported only when a URI is scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dfscan.scanner.discovery import ROOT_GENERATOR, DiscoveryStats, Found
from dfscan.scanner.errors import DataError
from dfscan.scanner.preprocess import has_image_extension

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(source: str) -> bool:
    return bool(_URI.match(source))


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URI; DataError when it cannot be used."""
    from dfscan.scanner.engine_ray import require

    require("fsspec")
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise DataError(f"cannot open {uri}: {exc}", hint='pip install "dfscan[ray]"') from exc


def check_uri(uri: str) -> None:
    fs, root = filesystem(uri)
    try:
        exists = fs.exists(root)
    except Exception as exc:  # each filesystem has its own errors (credentials, network)
        raise DataError(f"cannot list {uri}: {type(exc).__name__}: {exc}") from exc
    if not exists:
        raise DataError(f"folder not found: {uri}")


def discover_uri(uri: str, stats: DiscoveryStats) -> Iterator[Found]:
    """The image files under ``uri``, in sorted order, one directory listed at a time."""
    fs, root = filesystem(uri)
    root = root.rstrip("/")
    base = uri.rstrip("/")
    if fs.isfile(root):
        yield Found(base, ROOT_GENERATOR)
        return
    for dirpath, dirs, files in fs.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = f"{dirpath.rstrip('/')}/{name}"
            if not has_image_extension(name):
                stats.ignored += 1
                continue
            rel = full[len(root) :].lstrip("/")
            parts = rel.split("/")
            generator = parts[0] if len(parts) > 1 else ROOT_GENERATOR
            yield Found(f"{base}/{rel}", generator)


def read_bytes(path: str) -> bytes:
    """The bytes of a local path or a URI (OSError when they cannot be read)."""
    if not is_uri(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = filesystem(path)
    try:
        return fs.cat_file(inner)
    except OSError:
        raise
    except Exception as exc:  # the remote filesystem's own errors
        raise OSError(f"{type(exc).__name__}: {exc}") from exc

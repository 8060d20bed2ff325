"""Scan sources beyond local folders: fsspec URIs (``s3://bucket/prefix``, ``gs://…``,
``file://…``), listed as a stream and read as bytes.

A file's generator is its first-level folder under the given prefix, as for local folders
(files directly under it: ``(root)``). Listing walks one directory at a time, depth first in
name order like local discovery, so only the directories on the current path are held. fsspec
(and s3fs) come with the ``[ray]`` extra; they are imported only when a URI is scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..errors import DataError, MissingExtra
from ..labels import label_of
from ..model.preprocess import has_image_extension
from .discovery import ROOT_GENERATOR, DiscoveryStats, Found

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(source: str) -> bool:
    return bool(_URI.match(source))


def require(module: str) -> None:
    """Raise MissingExtra with the install hint when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"--engine ray and URI sources need {module}, not installed",
            hint='pip install "dfscan[ray]"',
        )


def filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URI; DataError when it cannot be used."""
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
    """The image files under ``uri``, depth first in name order (as local discovery walks), one
    directory listed at a time."""
    fs, root = filesystem(uri)
    root = root.rstrip("/")
    base = uri.rstrip("/")
    if fs.isfile(root):
        yield Found(base, ROOT_GENERATOR)
        return

    def listing(path: str) -> Iterator[tuple[str, bool]]:
        try:
            entries = fs.ls(path, detail=True)
        except OSError as exc:
            stats.unlisted.append((path, str(exc)))
            return iter(())
        out = []
        for entry in entries:
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if str(entry["name"]).rstrip("/") == path:  # some stores list the prefix itself
                continue
            out.append((name, entry.get("type") == "directory"))
        return iter(sorted(out))

    stack: list[tuple[str, tuple[str, ...], str, Iterator[tuple[str, bool]]]]
    stack = [(root, (), ROOT_GENERATOR, listing(root))]
    while stack:
        folder, parts, generator, entries = stack[-1]
        for name, is_dir in entries:
            path = f"{folder}/{name}"
            if is_dir:  # the generator by the label convention, as for local folders
                sub = (*parts, name)
                label = label_of(sub)[1]  # type: ignore[index]  # sub is not empty: never None
                stack.append((path, sub, label, listing(path)))
                break
            if not has_image_extension(name):
                stats.ignored += 1
                continue
            yield Found(f"{base}/{path[len(root) + 1 :]}", generator)
        else:
            stack.pop()


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

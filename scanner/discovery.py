"""Finding the images under the folders to scan, as a stream.

- Recursive, depth first, names sorted within each folder, so the order is the same on every
  run and every machine (files and subfolders interleaved by name, like a sorted listing).
- Streams: only the listings of the folders on the current path are held (names only), so the
  first image comes out as soon as the first folder is listed, whatever the size of the tree.
- Symbolic links are followed, but a folder already visited (same device and inode) is not
  entered again, so link loops cannot hang it.
- Nothing with an image extension is dropped silently: what cannot be read as a file (broken
  or looping link, FIFO, socket) comes out with the reason, and becomes an error row. Files
  without an image extension are counted, folders that cannot be listed are recorded.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dfscan.scanner.errors import DataError
from dfscan.scanner.preprocess import has_image_extension

ROOT_GENERATOR = "(root)"  # the generator of files directly in a scanned folder


@dataclass(frozen=True, slots=True)
class Found:
    """One file to scan: its path as reports show it, its generator, and a known problem."""

    path: str  # the scanned folder as given (normalised) joined with the relative path
    generator: str  # first-level subfolder under the scanned folder, or ROOT_GENERATOR
    problem: str | None = None  # why it cannot be opened, found without opening it


@dataclass
class DiscoveryStats:
    """What discovery passed over, so the summary can say so."""

    ignored: int = 0  # entries without an image extension
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)


_DIR = "dir"
_FILE = "file"
_IGNORED = "ignored"


def _classify(entry: os.DirEntry[str]) -> str:
    """_DIR, _FILE, _IGNORED, or the reason why an image-named entry cannot be read."""
    image_name = has_image_extension(entry.name)
    try:
        if entry.is_dir():  # follows links: a linked folder is walked (once)
            return _DIR
        if not image_name:
            return _IGNORED
        if entry.is_file():
            return _FILE
        return "broken symbolic link" if entry.is_symlink() else "not a regular file"
    except OSError as exc:  # a link loop (ELOOP) or a vanished entry
        return f"cannot follow: {exc.strerror or exc}" if image_name else _IGNORED


def _listing(
    folder: str, seen: set[tuple[int, int]], stats: DiscoveryStats, sort: bool
) -> list[tuple[str, str]]:
    """(name, kind) of a folder's entries worth visiting; empty when visited or unlistable."""
    out: list[tuple[str, str]] = []
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            return out
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                kind = _classify(entry)
                if kind == _IGNORED:
                    stats.ignored += 1
                else:
                    out.append((entry.name, kind))
    except OSError as exc:
        stats.unlisted.append((folder, exc.strerror or str(exc)))
    if sort:
        out.sort()
    return out


def walk(
    root: str | os.PathLike[str],
    stats: DiscoveryStats | None = None,
    sort: bool = True,
    stop: threading.Event | None = None,
) -> Iterator[Found]:
    """Every image-named file under ``root`` (a folder, or one file), lazily, in name order."""
    stats = stats if stats is not None else DiscoveryStats()
    top = os.path.normpath(os.fspath(root))
    if not os.path.isdir(top):  # one file given directly: scan it whatever its name
        yield Found(top, ROOT_GENERATOR, None if os.path.isfile(top) else "not a regular file")
        return
    seen: set[tuple[int, int]] = set()
    # One entry per folder on the current path: (folder, generator, its remaining entries).
    stack = [(top, ROOT_GENERATOR, iter(_listing(top, seen, stats, sort)))]
    while stack:
        folder, generator, entries = stack[-1]
        for name, kind in entries:
            path = os.path.join(folder, name)
            if kind == _DIR:
                sub_generator = name if len(stack) == 1 else generator
                stack.append((path, sub_generator, iter(_listing(path, seen, stats, sort))))
                break
            yield Found(path, generator, None if kind == _FILE else kind)
        else:
            stack.pop()
        if stop is not None and stop.is_set():
            return


def check_roots(roots: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The folders to scan: they exist, and none lies inside another (its files would be
    scanned twice, under two generators)."""
    checked = [Path(r) for r in roots]
    if not checked:
        raise DataError("no folder to scan given")
    for root in checked:
        if not root.exists():
            raise DataError(f"folder not found: {root}")
    resolved = [r.resolve() for r in checked]
    for i, j in itertools.permutations(range(len(checked)), 2):
        inside = resolved[i].is_relative_to(resolved[j])
        if inside and (resolved[i] != resolved[j] or i > j):  # the same folder: name it once
            raise DataError(
                f"{checked[i]} is already scanned as part of {checked[j]}",
                hint="give each folder once",
            )
    return checked


def discover(roots: Iterable[str | os.PathLike[str]], stats: DiscoveryStats) -> Iterator[Found]:
    """The files of several scanned folders, one after the other."""
    for root in roots:
        yield from walk(root, stats)


def count_pending(
    roots: Iterable[str | os.PathLike[str]],
    done: Collection[str] = (),
    stop: threading.Event | None = None,
) -> int:
    """How many files a scan will process (for the progress bar's total and ETA)."""
    return sum(
        1 for root in roots for found in walk(root, sort=False, stop=stop) if found.path not in done
    )


def iter_image_files(root: Path) -> Iterator[Path]:
    """Readable image files under root in sorted order (the training datasets' listing)."""
    top = os.path.normpath(root)
    for found in walk(root):
        if found.problem is None:
            yield root / os.path.relpath(found.path, top)

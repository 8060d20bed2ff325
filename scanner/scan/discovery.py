"""Finding the images under the folders to scan, as a stream.

- Recursive, depth first, names sorted within each folder, so the order is the same on every
  run and every machine (files and subfolders interleaved by name, like a sorted listing).
- Streams: only the listings of the folders on the current path are held (names only), so the
  first image comes out as soon as the first folder is listed, whatever the size of the tree.
- Symbolic links are followed, but a folder is not entered from inside itself (same device and
  inode as a folder on the current path), so link loops cannot hang it. A folder linked from
  elsewhere is listed under both names by :func:`walk`; :func:`discover` then scans a file
  reached twice (through a link, a hard link or two scanned folders) once, where it is first
  met, and counts the others as duplicates. (The training listing keeps the path reached
  without a link, see :mod:`dfscan.train.data.folder`.)
- A file's generator follows the training convention (:mod:`dfscan.scanner.labels`): its
  first-level subfolder, ``real`` under a ``0_real`` folder, the top folder (or ``fake``) under
  ``1_fake``; files directly in the scanned folder have ``(root)``.
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

from ..errors import DataError
from ..labels import label_of

ROOT_GENERATOR = "(root)"  # the generator of files directly in a scanned folder


@dataclass(frozen=True, slots=True)
class Found:
    """One file to scan: its path as reports show it, its generator, and a known problem."""

    path: str  # the scanned folder as given (normalised) joined with the relative path
    generator: str  # by the label convention (see above), or ROOT_GENERATOR
    problem: str | None = None  # why it cannot be opened, found without opening it


@dataclass
class DiscoveryStats:
    """What discovery passed over, so the summary can say so."""

    ignored: int = 0  # entries without an image extension
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)
    duplicates: int = 0  # files already met under another path (link, hard link, other root)


_DIR = "dir"
_FILE = "file"
_IGNORED = "ignored"


def _classify(entry: os.DirEntry[str]) -> str:
    """_DIR, _FILE, _IGNORED, or the reason why an image-named entry cannot be read."""
    from ..model.preprocess import has_image_extension  # numpy/Pillow: not at CLI start

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
    folder: str, ancestors: set[tuple[int, int]], stats: DiscoveryStats, sort: bool
) -> tuple[tuple[int, int] | None, list[tuple[str, str]]]:
    """The folder's (device, inode), and (name, kind) of its entries worth visiting; empty
    when the folder is one of its own ancestors (a link loop) or cannot be listed."""
    out: list[tuple[str, str]] = []
    identity = None
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in ancestors:
            return None, out
        identity = (st.st_dev, st.st_ino)
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
    return identity, out


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
    ancestors: set[tuple[int, int]] = set()  # the folders on the current path

    def enter(path: str, parts: tuple[str, ...], generator: str) -> None:
        identity, entries = _listing(path, ancestors, stats, sort)
        if identity is not None:
            ancestors.add(identity)
        stack.append((path, parts, generator, identity, iter(entries)))

    # One entry per folder on the current path: (folder, its folder names below the root,
    # generator, its identity, its remaining entries).
    stack: list[tuple[str, tuple[str, ...], str, tuple[int, int] | None, Iterator]] = []
    enter(top, (), ROOT_GENERATOR)
    while stack:
        folder, parts, generator, _, entries = stack[-1]
        for name, kind in entries:
            path = os.path.join(folder, name)
            if kind == _DIR:
                sub = (*parts, name)
                enter(path, sub, label_of(sub)[1])  # type: ignore[index]  # sub is not empty: never None
                break
            yield Found(path, generator, None if kind == _FILE else kind)
        else:
            identity = stack.pop()[3]
            ancestors.discard(identity)
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


def file_identity(path: str) -> tuple[int, int] | str:
    """What makes two paths one file: (device, inode), or the resolved path where the file
    system has no inode numbers."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(path)


def unique(found: Iterable[Found], stats: DiscoveryStats | None = None) -> Iterator[Found]:
    """``found`` without the files already met under another path (counted in ``stats``)."""
    seen: set[tuple[int, int] | str] = set()
    for f in found:
        if f.problem is None:
            key = file_identity(f.path)
            if key in seen:
                if stats is not None:
                    stats.duplicates += 1
                continue
            seen.add(key)
        yield f


def discover(roots: Iterable[str | os.PathLike[str]], stats: DiscoveryStats) -> Iterator[Found]:
    """The files of several scanned folders, one after the other, each file once."""
    yield from unique((f for root in roots for f in walk(root, stats)), stats)


def count_pending(
    roots: Iterable[str | os.PathLike[str]],
    done: Collection[str] = (),
    stop: threading.Event | None = None,
) -> int:
    """How many files a scan will process (for the progress bar's total and ETA)."""
    found = unique(f for root in roots for f in walk(root, sort=False, stop=stop))
    return sum(1 for f in found if f.path not in done)


def iter_image_files(root: Path) -> Iterator[Path]:
    """Readable image files under root in sorted order (the training datasets' listing)."""
    top = os.path.normpath(root)
    for found in walk(root):
        if found.problem is None:
            yield root / os.path.relpath(found.path, top)

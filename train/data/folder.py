"""Reading a dataset folder: which files are real, which fake, from which generator.

Conventions (docs/training.md, "Dataset folders"; the labels are
:mod:`dfscan.scanner.labels`', shared with the scan's tallies):

- ``ROOT/real/**`` are real images; every other top-level folder ``ROOT/<generator>/**``
  holds fakes of that generator (so ``ROOT/fake/**`` works too).
- CNNDetection style: any file under a ``0_real`` folder is real, under ``1_fake`` is fake; the
  generator is the top-level folder (``ROOT/progan/car/1_fake/x.png`` → ``progan``), or
  ``fake`` for ``ROOT/1_fake``.
- Groups: files whose names share the part before ``__`` (``chelsea-t2__7.png``) come from the
  same source image (crops, patches, a fake made from a real), in any folder; the splitter
  keeps a group in one split. Without ``__`` every file is its own group.
- Real sources: ``ROOT/real/<source>/**`` names the source of a real photo (a camera, a site,
  a package), so a hold-out can test on real photos from sources never seen in training
  (``dfscan experiments --holdout``) and the head's CV can hold reals out by source. Files
  directly in ``real/`` (and fakes) have no source (``""``); a folds file can give one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from dfscan.scanner import labels
from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import FAKE_LABEL, REAL, REAL_LABEL
from dfscan.scanner.scan.discovery import file_identity, iter_image_files

__all__ = [
    "DatasetScan",
    "Sample",
    "group_of",
    "label_of",
    "scan_dataset",
    "source_of",
]


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, POSIX separators
    label: int  # 0 real, 1 fake
    generator: str  # "real" for real images
    group: str
    source: str = ""  # where a real photo comes from (camera, site, package); "" = unknown


def label_of(rel: PurePosixPath) -> tuple[int, str] | None:
    """(label, generator) for a path relative to the root, or None when it has no class."""
    return labels.label_of(rel.parts[:-1])


def group_of(rel: PurePosixPath) -> str:
    stem = rel.stem
    return stem.split("__", 1)[0] if "__" in stem else str(rel.with_suffix(""))


def source_of(rel: PurePosixPath) -> str:
    """The source sub-folder of a real image (``real/<source>/…``), else ``""``."""
    parts = rel.parts
    return parts[1] if len(parts) >= 3 and parts[0] == REAL else ""


def _readable(path: Path) -> str | None:
    """Why ``path`` is not an image, from its header alone (cheap), or None."""
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018  (parsing the header is the check)
    except Exception as exc:  # Pillow raises many types for non-images
        return f"{exc.__class__.__name__}: {exc}"
    return None


@dataclass
class DatasetScan:
    root: Path
    samples: list[Sample]
    unreadable: list[tuple[str, str]]  # (relative path, reason)
    unlabelled: list[str]  # images directly in the root
    # (relative path, the relative path kept): one file reached twice, through a symbolic or
    # hard link, is one sample (so it cannot be in two splits, nor real and fake at once)
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.generator for s in self.samples).items()))


def _unique_files(root: Path, paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """One path per file (same device and inode, else same resolved path), in listing order,
    and the (duplicate, kept) relative paths dropped. The path kept is the one reached without
    a link below ``root`` if there is one, else the first listed."""
    top = root.resolve()
    by_file: dict[object, list[Path]] = {}
    for path in paths:
        by_file.setdefault(file_identity(str(path)), []).append(path)
    kept: list[Path] = []
    dropped: list[tuple[str, str]] = []
    for same in by_file.values():
        direct = [p for p in same if p.resolve() == top / p.relative_to(root)]
        keep = (direct or same)[0]
        kept.append(keep)
        dropped += [(_rel(root, p), _rel(root, keep)) for p in same if p is not keep]
    chosen = set(kept)
    return [p for p in paths if p in chosen], sorted(dropped)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def scan_dataset(root: str | Path, check_headers: bool = True) -> DatasetScan:
    """Find and label every image under ``root``; errors when real or fake images are missing."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    samples: list[Sample] = []
    unreadable: list[tuple[str, str]] = []
    unlabelled: list[str] = []
    files, duplicates = _unique_files(root, list(iter_image_files(root)))
    for path in files:
        rel = PurePosixPath(path.relative_to(root).as_posix())
        labelled = label_of(rel)
        if labelled is None:
            unlabelled.append(str(rel))
            continue
        reason = _readable(path) if check_headers else None
        if reason:
            unreadable.append((str(rel), reason))
            continue
        source = source_of(rel) if labelled[0] == 0 else ""
        samples.append(Sample(str(rel), labelled[0], labelled[1], group_of(rel), source))
    scan = DatasetScan(root, samples, unreadable, unlabelled, duplicates)
    hint = "put real images in ROOT/real/ and fakes in ROOT/<generator>/ (see docs/training.md)"
    if not any(s.label == REAL_LABEL for s in samples):
        raise DataError(f"no real images in {root}: expected a real/ (or 0_real/) folder", hint)
    if not any(s.label == FAKE_LABEL for s in samples):
        raise DataError(f"no fake images in {root}: expected a folder per generator", hint)
    return scan

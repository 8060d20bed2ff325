"""The real/fake label convention, defined once (torch-free: the scanner and training share it).

- Classes: index 0 is ``real``, index 1 is ``fake`` (the model's outputs, the labels of the
  training samples, the verdicts in reports).
- Folders (docs/training.md, "Dataset folders"), for a path relative to the dataset or scanned root:
  any file under a ``0_real`` folder is real; else any under ``1_fake`` is fake (its generator
  is the top-level folder, or ``fake`` for ``ROOT/1_fake`` and ``ROOT/real/…/1_fake``); else
  ``real/**`` is real and every other top-level folder ``<generator>/**`` holds that
  generator's fakes. Files directly in the root have no class.
- So a generator name is ``real`` exactly when the file is real.
"""

from __future__ import annotations

from collections.abc import Sequence

REAL = "real"
FAKE = "fake"
CLASSES = (REAL, FAKE)  # index = label
REAL_LABEL, FAKE_LABEL = CLASSES.index(REAL), CLASSES.index(FAKE)
REAL_MARK = "0_real"  # CNNDetection's folder names
FAKE_MARK = "1_fake"


def label_of(folders: Sequence[str]) -> tuple[int, str] | None:
    """(label, generator) of a file from its folders below the root, or None (in the root)."""
    if not folders:
        return None
    if REAL_MARK in folders:
        return REAL_LABEL, REAL
    if FAKE_MARK in folders:
        top = folders[0]
        return FAKE_LABEL, FAKE if top in (FAKE_MARK, REAL) else top
    if folders[0] == REAL:
        return REAL_LABEL, REAL
    return FAKE_LABEL, folders[0]


def is_fake_generator(generator: str) -> bool:
    """Does a generator name (from :func:`label_of`) stand for fakes?"""
    return generator != REAL

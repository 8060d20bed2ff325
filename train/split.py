"""Deterministic, stratified, group-aware train/val/test split, saved as ``split.csv``.

Groups (see :mod:`dfscan.train.dataset_folder`) are assigned whole, so crops of one source never
leak between splits. Strata are (label, generator): each generator and the real class are
divided 80/10/10 as closely as whole groups allow. Assignment is greedy: largest groups first
(ties broken by a seeded shuffle), each to the split whose targets it helps most.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfscan.scanner.errors import DataError
from dfscan.train.dataset_folder import Sample

SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)
FIELDS = ("path", "label", "generator", "group", "split")


def make_split(
    samples: Sequence[Sample], seed: int = 0, fractions: Sequence[float] = FRACTIONS
) -> dict[str, str]:
    """Map each sample path to ``train``/``val``/``test``."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.group].append(s)
    totals = Counter(s.generator for s in samples)
    assigned = {split: Counter() for split in SPLITS}
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    ranked = sorted(order, key=lambda i: -len(groups[names[i]]))  # stable: shuffle breaks ties
    result: dict[str, str] = {}
    for i in ranked:
        members = groups[names[i]]
        strata = Counter(s.generator for s in members)

        def need(split_index: int, strata: Counter = strata) -> float:
            split = SPLITS[split_index]
            return sum(
                n * (fractions[split_index] * totals[g] - assigned[split][g]) / totals[g]
                for g, n in strata.items()
            )

        best = max(range(len(SPLITS)), key=lambda k: (need(k), -k))
        assigned[SPLITS[best]].update(strata)
        for s in members:
            result[s.path] = SPLITS[best]
    return result


def check_split(samples: Sequence[Sample], assignment: dict[str, str]) -> None:
    """Every split needs real and fake images, else metrics and thresholds are meaningless."""
    for split in SPLITS:
        labels = {s.label for s in samples if assignment[s.path] == split}
        if labels != {0, 1}:
            n_real = sum(s.label == 0 for s in samples)
            raise DataError(
                f"too few images for an 80/10/10 split: the {split} split has no "
                f"{'real' if 0 not in labels else 'fake'} image ({len(samples)} images, "
                f"{n_real} real, {len(samples) - n_real} fake, "
                f"{len({s.group for s in samples})} groups)",
                hint="use at least ~10 real and ~10 fake images in separate groups",
            )


def write_split(path: Path, samples: Sequence[Sample], assignment: dict[str, str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for s in samples:
            writer.writerow((s.path, s.label, s.generator, s.group, assignment[s.path]))


def read_split(path: Path) -> tuple[list[Sample], dict[str, str]]:
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise DataError(f"{path} is not a dfscan split file (columns {', '.join(FIELDS)})")
        rows = list(reader)
    bad = [r["split"] for r in rows if r["split"] not in SPLITS]
    if bad:
        raise DataError(f"{path}: unknown split name {bad[0]!r}")
    samples = [Sample(r["path"], int(r["label"]), r["generator"], r["group"]) for r in rows]
    return samples, {r["path"]: r["split"] for r in rows}


def split_hash(assignment: dict[str, str]) -> str:
    """Identifies a split (paths and their splits, order-free) in checkpoints and models."""
    digest = hashlib.sha256()
    for path in sorted(assignment):
        digest.update(f"{path}\t{assignment[path]}\n".encode())
    return digest.hexdigest()[:16]

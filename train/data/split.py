"""Deterministic, stratified, group-aware train/val/test split, saved as ``split.csv``.

Groups (see :mod:`dfscan.train.data.folder`) are assigned whole, so crops of one source never
leak between splits. Stratified by class first, then by generator: real and fake images are each
divided 80/10/10 as closely as whole groups allow, and within that each generator too, as far as
its groups allow (a generator folder of 3 images cannot be in three splits). Assignment is
greedy: largest groups first (ties broken by a seeded shuffle), each to a split that still lacks
its class, and among those the one whose generator targets it helps most.
:func:`describe_split` says what came out balanced.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import FAKE, FAKE_LABEL, REAL, REAL_LABEL

from .folder import Sample

SPLITS = ("train", "val", "test")
FRACTIONS = (0.8, 0.1, 0.1)
FIELDS = ("path", "label", "generator", "group", "source", "split")
LEGACY_FIELDS = ("path", "label", "generator", "group", "split")  # before real sources


def make_split(
    samples: Sequence[Sample], seed: int = 0, fractions: Sequence[float] = FRACTIONS
) -> dict[str, str]:
    """Map each sample path to ``train``/``val``/``test``.

    Class first, then generator: a group may go to a split only while that split still lacks
    about its size of the group's class (real, fake), so every split gets its share of fakes
    even when they come from many tiny generator folders; among those splits, the one whose
    generator strata the group helps most wins. A split with fraction 0 gets nothing.
    """
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.group].append(s)
    totals = Counter(s.generator for s in samples)
    class_totals = Counter(s.label for s in samples)
    assigned: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}  # generators
    assigned_class: dict[str, Counter[int]] = {split: Counter() for split in SPLITS}  # labels
    usable = [k for k in range(len(SPLITS)) if fractions[k] > 0]
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    ranked = sorted(order, key=lambda i: -len(groups[names[i]]))  # stable: shuffle breaks ties
    result: dict[str, str] = {}
    for i in ranked:
        members = groups[names[i]]
        strata = Counter(s.generator for s in members)
        classes = Counter(s.label for s in members)

        def deficit(k: int, c: int) -> float:  # images of class c split k still lacks
            return fractions[k] * class_totals[c] - assigned_class[SPLITS[k]][c]

        def fits(k: int, classes: Counter = classes) -> bool:  # no overshoot past half an image
            return all(deficit(k, c) - n >= -0.5 for c, n in classes.items())

        def class_need(k: int, classes: Counter = classes) -> float:
            return sum(n * deficit(k, c) / class_totals[c] for c, n in classes.items())

        def need(k: int, strata: Counter = strata) -> float:
            split = SPLITS[k]
            return sum(
                n * (fractions[k] * totals[g] - assigned[split][g]) / totals[g]
                for g, n in strata.items()
            )

        fitting = [k for k in usable if fits(k)]
        if fitting:
            best = max(fitting, key=lambda k: (need(k), -k))
        else:  # the group overshoots everywhere: the split whose classes lack it most
            best = max(usable, key=lambda k: (class_need(k), need(k), -k))
        assigned[SPLITS[best]].update(strata)
        assigned_class[SPLITS[best]].update(classes)
        for s in members:
            result[s.path] = SPLITS[best]
    return result


def describe_split(samples: Sequence[Sample], assignment: dict[str, str]) -> str:
    """What the split balanced, in one line: per-class counts, and which generators could be
    spread over every split and which were too small (kept whole, balanced by class only)."""
    per_class: dict[int, Counter[str]] = {label: Counter() for label in (REAL_LABEL, FAKE_LABEL)}
    per_gen: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        per_class[s.label][assignment[s.path]] += 1
        if s.label == FAKE_LABEL:
            per_gen[s.generator][assignment[s.path]] += 1
    used = [split for split in SPLITS if any(per_class[c][split] for c in per_class)]

    def counts(c: Counter) -> str:
        return "/".join(str(c[split]) for split in used)

    spread = [g for g, c in per_gen.items() if all(c[split] for split in used)]
    line = (
        f"split {'/'.join(used)} by class: real {counts(per_class[REAL_LABEL])}, "
        f"fake {counts(per_class[FAKE_LABEL])}; by generator: {len(spread)} of {len(per_gen)} "
        f"generators in every split"
    )
    if len(spread) < len(per_gen):
        line += " (the others are too small: their groups are kept whole)"
    return line


def check_split(samples: Sequence[Sample], assignment: dict[str, str]) -> None:
    """Every split needs real and fake images, else metrics and thresholds are meaningless."""
    for split in SPLITS:
        labels = {s.label for s in samples if assignment[s.path] == split}
        if labels != {REAL_LABEL, FAKE_LABEL}:
            n_real = sum(s.label == REAL_LABEL for s in samples)
            raise DataError(
                f"too few images for an 80/10/10 split: the {split} split has no "
                f"{REAL if REAL_LABEL not in labels else FAKE} image ({len(samples)} images, "
                f"{n_real} real, {len(samples) - n_real} fake, "
                f"{len({s.group for s in samples})} groups)",
                hint="use at least ~10 real and ~10 fake images in separate groups",
            )


def write_split(path: str | Path, samples: Sequence[Sample], assignment: dict[str, str]) -> None:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for s in samples:
            writer.writerow((s.path, s.label, s.generator, s.group, s.source, assignment[s.path]))


def read_split(path: str | Path) -> tuple[list[Sample], dict[str, str]]:
    """Samples (with their real source, the one record of it a training run reads) and splits;
    files without the ``source`` column read as sources unknown."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (FIELDS, LEGACY_FIELDS):
            raise DataError(f"{path} is not a dfscan split file (columns {', '.join(FIELDS)})")
        rows = list(reader)
    bad = [r["split"] for r in rows if r["split"] not in SPLITS]
    if bad:
        raise DataError(f"{path}: unknown split name {bad[0]!r}")
    samples = [
        Sample(r["path"], int(r["label"]), r["generator"], r["group"], r.get("source") or "")
        for r in rows
    ]
    return samples, {r["path"]: r["split"] for r in rows}


def split_hash(assignment: dict[str, str]) -> str:
    """Identifies a split (paths and their splits, order-free) in checkpoints and models."""
    digest = hashlib.sha256()
    for path in sorted(assignment):
        digest.update(f"{path}\t{assignment[path]}\n".encode())
    return digest.hexdigest()[:16]

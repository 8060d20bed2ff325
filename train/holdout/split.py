"""Leave-groups-out cross-validation: how a detector does on generators it never saw.

A hold-out protocol is a way of making splits, not a second trainer: every fold is an ordinary
``dfscan train`` run on a ``split.csv`` whose ``test`` part is one fold and whose ``train``/
``val`` parts are the other folds (validation: ``VAL_FRACTION`` of their groups, stratified),
then a scoring of the held-out fold as it is, after a JPEG-75 re-encoding and after a 0.5×
rescale (GenImage-style: train on some generators, test on the rest).

Folds come from a file (``--folds``: CSV with ``path`` and ``fold``, optionally ``family`` and
``group``; the dev kit's ``manifest.csv`` is one) or are made here: every fake *family*
(``--holdout families``, from the file's ``family`` column) or *generator* (``--holdout
generators``, the folder name) goes whole to one fold, largest first to the lightest.

Real photos go to folds by whole *source* (``--holdout-reals sources``, the default when sources
are known: the folds file's ``source`` column, or ``origin_package`` as the dev kit names it, or
a ``real/<source>/`` sub-folder), largest first to the fold with the fewest reals, so each fold
tests on real photos from sources never seen in training, as a user's photos will be. A file's
``fold`` column then places the fakes only. ``--holdout-reals groups`` (and data without
sources) spreads real groups instead, by a seeded shuffle or as the file's ``fold`` column says:
test reals then come from the training reals' sources. Groups never straddle folds.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TypedDict

import numpy as np

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import FAKE_LABEL, REAL, REAL_LABEL

from ..data.folder import Sample
from ..data.split import make_split

HOLDOUTS = ("families", "generators")
HOLDOUT_REALS = ("sources", "groups")
SOURCE_COLUMNS = ("source", "origin_package")  # the first present names a real's source
VAL_FRACTION = 0.15


class FoldSummary(TypedDict):
    """One fold's row of :meth:`FoldPlan.summary`."""

    fold: str
    real: int
    fake: int
    families: list[str]  # the fake families in the fold
    sources: dict[str, int]  # real source -> images


@dataclass(frozen=True)
class FoldPlan:
    """Which fold each sample belongs to, and the family it is reported under."""

    samples: list[Sample]  # groups as the folds file gives them
    fold: dict[str, str]  # path -> fold name
    family: dict[str, str]  # path -> family (REAL for real images)
    reals: str = "groups"  # how reals were placed: whole "sources" or "groups"

    @property
    def names(self) -> list[str]:
        return sorted(set(self.fold.values()), key=_natural)

    def assignment(self, fold: str, seed: int = 0) -> dict[str, str]:
        """The split of one fold: test = the fold, train/val = the others' groups."""
        rest = [s for s in self.samples if self.fold[s.path] != fold]
        split = make_split(rest, seed, (1.0 - VAL_FRACTION, VAL_FRACTION, 0.0))
        split |= {s.path: "test" for s in self.samples if self.fold[s.path] == fold}
        return split

    def summary(self) -> list[FoldSummary]:
        rows: list[FoldSummary] = []
        for name in self.names:
            members = [s for s in self.samples if self.fold[s.path] == name]
            families = sorted({self.family[s.path] for s in members if s.label == FAKE_LABEL})
            sources = Counter(s.source for s in members if s.label == REAL_LABEL and s.source)
            rows.append(
                {
                    "fold": name,
                    "real": sum(s.label == REAL_LABEL for s in members),
                    "fake": sum(s.label == FAKE_LABEL for s in members),
                    "families": families,
                    "sources": dict(sorted(sources.items())),
                }
            )
        return rows


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _resolve(raw: str, data: Path, folds_file: Path) -> str | None:
    """A folds-file path as a path relative to DATA (given relative to DATA or to the file)."""
    data = data.resolve()
    for base in (data, folds_file.resolve().parent):
        candidate = (base / raw).resolve()
        if not candidate.exists():
            continue
        try:
            return PurePosixPath(candidate.relative_to(data).as_posix()).as_posix()
        except ValueError:
            continue
    return None


def read_folds_file(path: Path, data: Path) -> dict[str, dict[str, str]]:
    """path (relative to DATA) -> the row's ``fold``/``family``/``group``/``source`` values
    present (``source`` read from the first of :data:`SOURCE_COLUMNS` the file has)."""
    if not path.is_file():
        raise DataError(f"folds file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if "path" not in columns or not columns & {"fold", "family"}:
            raise DataError(
                f"{path} is not a folds file",
                hint="a CSV with a path column and a fold and/or family column",
            )
        source = next((c for c in SOURCE_COLUMNS if c in columns), None)
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            rel = _resolve(row["path"], data, path)
            if rel is not None:
                keep = ("fold", "family", "group")
                rows[rel] = {k: row[k] for k in keep if row.get(k)}
                if source and row.get(source):
                    rows[rel]["source"] = row[source]
    return rows


def plan_folds(
    samples: Sequence[Sample],
    holdout: str,
    folds_file: Path | None = None,
    data: Path | None = None,
    n_folds: int = 3,
    seed: int = 0,
    reals: str = "sources",
) -> FoldPlan:
    """Assign every sample to a fold (see the module docstring). ``reals="sources"`` falls
    back to groups when no real image has a source."""
    if holdout not in HOLDOUTS:
        raise DataError(f"unknown --holdout {holdout!r}; use one of {', '.join(HOLDOUTS)}")
    if reals not in HOLDOUT_REALS:
        raise DataError(f"unknown --holdout-reals {reals!r}; use one of {', '.join(HOLDOUT_REALS)}")
    info: dict[str, dict[str, str]] = {}
    if folds_file is not None:
        info = read_folds_file(folds_file, data or Path("."))
        missing = [s.path for s in samples if s.path not in info]
        if missing:
            raise DataError(
                f"{len(missing)} images of the dataset are not in {folds_file} "
                f"(first: {missing[0]})",
                hint="the folds file must list every image, with paths relative to DATA or to it",
            )
    elif holdout == "families":
        raise DataError(
            "--holdout families needs --folds FILE with a family column",
            hint="or use --holdout generators (each generator folder is its own family)",
        )
    samples = [_with_file_info(s, info.get(s.path, {})) for s in samples]
    family = {
        s.path: REAL
        if s.label == REAL_LABEL
        else (info[s.path].get("family", s.generator) if holdout == "families" else s.generator)
        for s in samples
    }
    given = {p: r["fold"] for p, r in info.items() if "fold" in r}
    if holdout == "families" and len(given) == len(info) and info:
        fold = {s.path: given[s.path] for s in samples}
    else:
        fold = _make_folds(samples, family, n_folds, seed)
    if reals == "sources" and any(s.source for s in samples if s.label == REAL_LABEL):
        fold = _reals_by_source(samples, fold)
    else:
        reals = "groups"
    _check_groups(samples, fold)
    plan = FoldPlan(samples, fold, family, reals)
    for row in plan.summary():
        if not row["real"] or not row["fake"]:
            raise DataError(
                f"fold {row['fold']} has {row['real']} real and {row['fake']} fake images",
                hint="every fold needs both; use fewer folds (--n-folds) or more data",
            )
    if len(plan.names) < 2:
        raise DataError("a hold-out needs at least 2 folds")
    return plan


def _with_file_info(sample: Sample, row: dict[str, str]) -> Sample:
    """The folds file's group, and for a real image its source, over the folder's."""
    group = row.get("group", sample.group)
    source = row.get("source", sample.source) if sample.label == REAL_LABEL else sample.source
    return replace(sample, group=group, source=source)


def _reals_by_source(samples: Sequence[Sample], fold: dict[str, str]) -> dict[str, str]:
    """Fakes keep their folds; real images go by whole source, largest first (by image count)
    to the fold with the fewest reals. A source with photos that fakes were made from follows
    those fakes (they share a group); one whose photos feed fakes in two folds cannot be held
    out, and is an error."""
    names = sorted(set(fold.values()), key=_natural)
    reals = [s for s in samples if s.label == REAL_LABEL]
    unknown = [s.path for s in reals if not s.source]
    if unknown:
        raise DataError(
            f"{len(unknown)} of {len(reals)} real images have no source (first: {unknown[0]})",
            hint="give every real a source (folds file column source, or real/<source>/), "
            "or pass --holdout-reals groups",
        )
    size = Counter(s.source for s in reals)
    if len(size) < len(names):
        raise DataError(
            f"{len(size)} real sources cannot fill {len(names)} folds",
            hint="use fewer folds (--n-folds) or --holdout-reals groups",
        )
    fake_fold = {s.group: fold[s.path] for s in samples if s.label == FAKE_LABEL}
    pinned: dict[str, set[str]] = defaultdict(set)
    for s in reals:
        if s.group in fake_fold:
            pinned[s.source].add(fake_fold[s.group])
    load = dict.fromkeys(names, 0)
    fold_of_source: dict[str, str] = {}
    for source, folds in sorted(pinned.items()):
        if len(folds) > 1:
            raise DataError(
                f"real source {source!r} holds photos of fakes in folds {sorted(folds)}: "
                "it cannot be held out whole",
                hint="use --holdout-reals groups",
            )
        fold_of_source[source] = folds.pop()
        load[fold_of_source[source]] += size[source]
    for source, count in sorted(size.items(), key=lambda kv: (-kv[1], kv[0])):
        if source not in fold_of_source:
            fold_of_source[source] = min(names, key=lambda k: (load[k], _natural(k)))
            load[fold_of_source[source]] += count
    return {
        s.path: fold_of_source[s.source] if s.label == REAL_LABEL else fold[s.path] for s in samples
    }


def _make_folds(
    samples: Sequence[Sample], family: dict[str, str], n_folds: int, seed: int
) -> dict[str, str]:
    """Fake families whole to the lightest fold (largest first); real groups round-robin."""
    if n_folds < 2:
        raise DataError(f"--n-folds must be at least 2, not {n_folds}")
    fakes = Counter(family[s.path] for s in samples if s.label == FAKE_LABEL)
    if len(fakes) < n_folds:
        raise DataError(
            f"{len(fakes)} fake families cannot fill {n_folds} folds",
            hint="use --n-folds 2 or --holdout generators",
        )
    load = [0] * n_folds
    fold_of_family: dict[str, int] = {}
    for name, count in sorted(fakes.items(), key=lambda kv: (-kv[1], kv[0])):
        k = min(range(n_folds), key=lambda i: (load[i], i))
        fold_of_family[name] = k
        load[k] += count
    fold_of_group: dict[str, int] = {}
    for s in samples:  # a group holding fakes follows them (a fake made from a real)
        if s.label == FAKE_LABEL:
            fold_of_group.setdefault(s.group, fold_of_family[family[s.path]])
    real_groups = sorted({s.group for s in samples if s.label == REAL_LABEL} - set(fold_of_group))
    order = np.random.default_rng(seed).permutation(len(real_groups))
    for i, j in enumerate(order):
        fold_of_group[real_groups[j]] = i % n_folds
    return {s.path: str(fold_of_group[s.group]) for s in samples}


def _check_groups(samples: Sequence[Sample], fold: dict[str, str]) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        seen[s.group].add(fold[s.path])
    split = sorted(g for g, folds in seen.items() if len(folds) > 1)
    if split:
        raise DataError(
            f"group {split[0]!r} is in folds {sorted(seen[split[0]])}: a source would leak",
            hint="keep every image of a group (crops of one photo, fakes made from it) in one fold",
        )

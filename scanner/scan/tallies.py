"""Per-generator tallies of a scan, and what they mean when the folder names tell the truth.

The generator of a file is given by discovery with the training's label convention
(:mod:`dfscan.scanner.labels`): its first-level subfolder, ``real`` for files under ``0_real``,
the top folder for files under ``1_fake`` (files directly in the scanned folder: ``(root)``).
Under that convention (``real/`` or ``0_real/`` hold real photos, every other folder one
generator's fakes), a scan of a labelled folder is also an evaluation: accuracy per
generator and the false-positive rate on ``real``. Rows are tallied as they are written, and
rows read back when resuming are tallied the same way, so the summary covers the whole folder.

Beside the scores, the tallies count the files whose metadata declares them generated
(``provenance``, see :mod:`dfscan.scanner.provenance.read`) and the files whose declaration and
verdict disagree (declared generated but scored real, or declared a camera capture but scored
fake).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..formatting import num, pct
from ..labels import FAKE, REAL, is_fake_generator
from ..provenance.read import declared, tags_of
from .discovery import ROOT_GENERATOR
from .reports import Row


def truth_of(generator: str) -> bool | None:
    """Is this generator's folder fake by the convention? None for files in the root."""
    if generator == ROOT_GENERATOR:
        return None
    return is_fake_generator(generator)


def generator_order(generator: str) -> tuple[bool, bool, str]:
    """The one order of generators wherever they are listed: ``real`` first, then the others
    by name, the files of the scanned folder itself (``(root)``) last."""
    return (generator != REAL, generator == ROOT_GENERATOR, generator)


def disagrees(row: Row) -> bool:
    """Do a row's declared origin and its verdict disagree (declared generated but scored
    real, or declared a camera capture but scored fake)?"""
    said = declared(row.provenance)
    return (said == "generated" and row.verdict == REAL) or (
        said == "captured" and row.verdict == FAKE
    )


@dataclass
class Tally:
    """Counts of one generator (or of all)."""

    images: int = 0  # files scored
    flagged: int = 0  # scored as fake at the threshold
    errors: int = 0  # files that could not be scored
    p_sum: float = 0.0
    declared: int = 0  # files whose metadata says they were generated
    disagree: int = 0  # scored files whose declaration and verdict disagree

    def add(self, row: Row) -> None:
        self.declared += declared(row.provenance) == "generated"
        self.disagree += disagrees(row)
        if row.p_fake is None:
            self.errors += 1
            return
        self.images += 1
        self.flagged += row.verdict == FAKE
        self.p_sum += row.p_fake

    def merge(self, other: Tally) -> None:
        self.images += other.images
        self.flagged += other.flagged
        self.errors += other.errors
        self.p_sum += other.p_sum
        self.declared += other.declared
        self.disagree += other.disagree

    @property
    def fake_fraction(self) -> float | None:
        return self.flagged / self.images if self.images else None

    @property
    def mean_p_fake(self) -> float | None:
        return self.p_sum / self.images if self.images else None

    def correct(self, is_fake: bool) -> int:
        return self.flagged if is_fake else self.images - self.flagged


@dataclass
class Tallies:
    """All generators of a scan."""

    by_generator: dict[str, Tally] = field(default_factory=dict)
    # files declaring they were generated, by what they name: "png:comfyui", "exif:Midjourney"…
    declared_by: Counter[str] = field(default_factory=Counter)

    def add(self, row: Row) -> None:
        tally = self.by_generator.get(row.generator)
        if tally is None:
            tally = self.by_generator[row.generator] = Tally()
        tally.add(row)
        if declared(row.provenance) == "generated":  # its strongest tag that says so
            for source, value in tags_of(row.provenance):
                tag = f"{source}:{value}"
                if declared(tag) == "generated":
                    self.declared_by[tag] += 1
                    break

    def declared_line(self) -> str | None:
        """``declared generated: png:comfyui 3, exif:Midjourney 1`` (None when none is)."""
        if not self.declared_by:
            return None
        parts = [
            f"{tag} {n}" for tag, n in sorted(self.declared_by.items(), key=lambda i: (-i[1], i[0]))
        ]
        return "declared generated: " + ", ".join(parts)

    @property
    def labelled(self) -> bool:
        """Do the folder names tell the truth? (a ``real`` folder next to the others)"""
        return REAL in self.by_generator

    @property
    def generators(self) -> list[str]:
        """The generators seen, in :func:`generator_order`."""
        return sorted(self.by_generator, key=generator_order)

    def total(self) -> Tally:
        total = Tally()
        for tally in self.by_generator.values():
            total.merge(tally)
        return total

    def accuracy(self, generator: str) -> float | None:
        """Share of this generator's images classified as its folder says (None: unlabelled)."""
        tally, truth = self.by_generator[generator], truth_of(generator)
        if truth is None or not tally.images or not self.labelled:
            return None
        return tally.correct(truth) / tally.images

    def overall_accuracy(self) -> float | None:
        correct = scored = 0
        for name, tally in self.by_generator.items():
            truth = truth_of(name)
            if truth is not None:
                correct += tally.correct(truth)
                scored += tally.images
        return correct / scored if scored and self.labelled else None

    def false_positive_rate(self) -> float | None:
        """Share of ``real`` images flagged fake."""
        real = self.by_generator.get(REAL)
        return real.flagged / real.images if real is not None and real.images else None

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (for ``--summary-json``)."""

        def entry(tally: Tally, accuracy: float | None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "images": tally.images,
                "flagged_fake": tally.flagged,
                "fake_fraction": tally.fake_fraction,
                "mean_p_fake": tally.mean_p_fake,
                "errors": tally.errors,
                "declared_generated": tally.declared,
                "declared_disagree": tally.disagree,
            }
            if self.labelled:
                out["accuracy"] = accuracy
            return out

        return {
            "labelled": self.labelled,
            "generators": {
                name: entry(self.by_generator[name], self.accuracy(name))
                for name in self.generators
            },
            "total": entry(self.total(), self.overall_accuracy()),
            "false_positive_rate": self.false_positive_rate(),
            "declared_by": dict(sorted(self.declared_by.items())),
        }


@dataclass(frozen=True)
class GeneratorTable:
    """The per-generator summary as text cells, built once for every place that shows it
    (the terminal's table, the HTML page): a header, one row per generator, the totals."""

    header: list[str]
    rows: list[list[str]]
    total: list[str]


def generator_table(tallies: Tallies, declared_columns: bool | None = None) -> GeneratorTable:
    """The table of ``tallies``: accuracy when the folders are labelled; the declared-AI and
    disagree columns when ``declared_columns`` (None: only when some file declares its
    origin)."""
    labelled = tallies.labelled
    if declared_columns is None:
        declared_columns = tallies.total().declared > 0 or tallies.total().disagree > 0
    header = ["generator", "images", "flagged fake", "% fake", "mean p_fake", "errors"]
    header += ["accuracy"] if labelled else []
    header += ["declared AI", "disagree"] if declared_columns else []

    def cells(name: str, tally: Tally, accuracy: float | None) -> list[str]:
        out = [name, str(tally.images), str(tally.flagged), pct(tally.fake_fraction)]
        out += [num(tally.mean_p_fake), str(tally.errors)]
        out += [pct(accuracy)] if labelled else []
        out += [str(tally.declared), str(tally.disagree)] if declared_columns else []
        return out

    rows = [cells(g, tallies.by_generator[g], tallies.accuracy(g)) for g in tallies.generators]
    return GeneratorTable(header, rows, cells("total", tallies.total(), tallies.overall_accuracy()))

"""Opening the report files of a scan: new, overwritten, or resumed.

An existing report is never replaced silently (a long scan interrupted and started again by
mistake would lose hours): the caller chooses ``resume`` or ``overwrite``. Resuming reads the
complete rows back, drops a row cut mid-write, and appends. With both a CSV and a JSONL, a file
that made it into one but not the other (killed between the two writes) is copied across, so
the two agree and no file is scanned twice.

A report is resumed only by the scan that wrote it: every row records the model's SHA-256 and
the threshold, and a row written by another model or at another threshold is refused (the
values are printed exactly, as ``repr`` gives them). With ``retry_errors`` the rows that had an
error are taken out of the reports (each rewritten to a temporary file, then renamed over it)
and their files are scanned again.

Everything is read and checked before anything is changed, so a refusal (foreign file, other
model, other threshold) leaves the files byte for byte as they were.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import DataError
from .reports import (
    CsvReport,
    JsonlReport,
    ReadBack,
    ReportWriter,
    Row,
    read_csv_report,
    read_jsonl_report,
    truncate_cut_row,
)

Existing = Literal["refuse", "resume", "overwrite"]

_READERS: dict[type, Callable[[Path, Callable[[Row], None]], ReadBack]] = {
    CsvReport: read_csv_report,
    JsonlReport: read_jsonl_report,
}


@dataclass
class OpenedReports:
    writers: list[ReportWriter]
    done: set[str] = field(default_factory=set)  # paths already in the reports
    resumed: int = 0  # rows read back
    retried: int = 0  # error rows taken out to be scanned again
    repaired: list[Path] = field(default_factory=list)  # reports whose cut last row was dropped

    def write(self, row: Row) -> None:
        for writer in self.writers:
            writer.write(row)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def _check_row(path: Path, row: Row, threshold: float, model_sha256: str) -> None:
    """Refuse a row written by another model or at another threshold (exact comparison: both
    survive the round trip through the report unchanged, ``repr`` for the threshold)."""
    if row.model_sha256 != model_sha256:
        raise DataError(
            f"cannot resume: {path} was written by the model with sha256 {row.model_sha256}; "
            f"this scan's model has sha256 {model_sha256}",
            hint="resume with the model that wrote it, or pass --overwrite or another report",
        )
    if row.threshold != threshold:
        raise DataError(
            f"cannot resume: {path} was written at threshold {row.threshold!r}, "
            f"this scan uses {threshold!r}",
            hint=f"pass --threshold {row.threshold!r} to continue it, or --overwrite",
        )


def _present(kinds: Sequence[tuple[Path, type]]) -> list[tuple[Path, type]]:
    return [(p, k) for p, k in kinds if p.exists() and (p.is_dir() or p.stat().st_size > 0)]


def check_reports(csv: Path | None, jsonl: Path | None, existing: Existing) -> None:
    """Refuse unusable report paths early, before a model is loaded or a file is touched."""
    kinds = [(path, kind) for path, kind in ((csv, CsvReport), (jsonl, JsonlReport)) if path]
    if existing == "resume" and not kinds:
        raise DataError("--resume needs the --csv or --jsonl report to continue")
    if csv and jsonl and csv.resolve() == jsonl.resolve():
        raise DataError("--csv and --jsonl must be different files")
    for path, _ in _present(kinds):
        if path.is_dir():
            raise DataError(f"report path is a folder: {path}")
        if existing == "refuse":
            raise DataError(
                f"{path} already exists",
                hint="pass --resume to continue that scan, or --overwrite to start again",
            )


def open_reports(
    csv: Path | None,
    jsonl: Path | None,
    existing: Existing,
    threshold: float,
    model_sha256: str,
    on_resumed_row: Callable[[Row], None] = lambda row: None,
    retry_errors: bool = False,
) -> OpenedReports:
    """Writers for the requested reports; ``on_resumed_row`` sees each kept earlier row once.

    ``retry_errors``: rows with an error are dropped from the reports and not counted as done,
    so their files are scanned again.
    """
    check_reports(csv, jsonl, existing)
    if retry_errors and existing != "resume":
        raise DataError("--retry-errors continues a report: pass it with --resume")
    kinds = [(path, kind) for path, kind in ((csv, CsvReport), (jsonl, JsonlReport)) if path]
    present = _present(kinds)
    if existing != "resume" or not present:
        return OpenedReports([kind(path) for path, kind in kinds])
    found = _read_present(present, threshold, model_sha256, on_resumed_row, retry_errors)
    repaired = [path for path, back in found.backs.items() if back.cut]
    if found.retry:
        _take_out_retried(present, found)
    writers = [_reopen(path, kind, present, found) for path, kind in kinds]
    return OpenedReports(
        writers,
        done=found.done,
        resumed=len(found.done),
        retried=len(found.retry),
        repaired=repaired,
    )


@dataclass
class _Found:
    """What the present reports hold, read and checked before anything is changed."""

    backs: dict[Path, ReadBack] = field(default_factory=dict)  # how much of each is whole
    keys: dict[Path, set[str]] = field(default_factory=dict)  # the files each has rows of
    done: set[str] = field(default_factory=set)  # files with a kept row in some report
    retry: set[str] = field(default_factory=set)  # files whose error rows are scanned again


def _read_present(
    present: list[tuple[Path, type]],
    threshold: float,
    model_sha256: str,
    on_resumed_row: Callable[[Row], None],
    retry_errors: bool,
) -> _Found:
    """Read every present report, refusing rows of another model or threshold (nothing is
    modified yet); ``on_resumed_row`` sees each kept file's first row."""
    found = _Found()
    for path, kind in present:
        own: set[str] = set()

        def take(row: Row, path: Path = path, own: set[str] = own) -> None:
            _check_row(path, row, threshold, model_sha256)
            own.add(row.path)
            if retry_errors and row.error is not None:
                found.retry.add(row.path)
            elif row.path not in found.done:
                found.done.add(row.path)
                on_resumed_row(row)

        found.backs[path] = _READERS[kind](path, take)
        found.keys[path] = own
    # a report pair that disagrees on a file's error: the file is retried all the same
    found.done -= found.retry
    return found


def _take_out_retried(present: list[tuple[Path, type]], found: _Found) -> None:
    """Rewrite the reports without the rows to retry (aside, then renamed over each)."""
    for path, kind in present:
        if found.keys[path] & found.retry:
            _rewrite_without(path, kind, found.retry)
            found.backs[path] = _READERS[kind](path, lambda row: None)
            found.keys[path] -= found.retry


def _reopen(
    path: Path, kind: type, present: list[tuple[Path, type]], found: _Found
) -> ReportWriter:
    """The writer of one report, appending after its whole rows when it exists; the rows the
    other reports have and it lacks are copied across, so they agree."""
    if path in found.backs:
        truncate_cut_row(path, found.backs[path])
    writer = kind(path, append=path in found.backs)
    missing = found.done - found.keys.get(path, set())
    for other, other_kind in present:
        if not missing or other == path:
            continue

        def copy(row: Row) -> None:
            if row.path in missing:
                writer.write(row)
                missing.discard(row.path)

        _READERS[other_kind](other, copy)
    return writer


def _rewrite_without(path: Path, kind: type, drop: set[str]) -> None:
    """Write ``path``'s complete rows except those of ``drop`` to a temporary file beside it,
    then rename it over ``path`` (a crash leaves the old report or the new one, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    writer = kind(tmp)
    try:

        def keep(row: Row) -> None:
            if row.path not in drop:
                writer.write(row)

        _READERS[kind](path, keep)
    finally:
        writer.close()
    os.replace(tmp, path)

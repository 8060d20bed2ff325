"""Opening the report files of a scan: new, overwritten, or resumed.

An existing report is never replaced silently (a long scan interrupted and started again by
mistake would lose hours): the caller chooses ``resume`` or ``overwrite``. Resuming reads the
complete rows back, drops a row cut mid-write, and appends. With both a CSV and a JSONL, a file
that made it into one but not the other (killed between the two writes) is copied across, so
the two agree and no file is scanned twice.

Everything is read before anything is changed, so a refusal (foreign file, other threshold)
leaves the files as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dfscan.scanner.errors import DataError
from dfscan.scanner.reports import (
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
THRESHOLD_TOLERANCE = 1e-9

_READERS: dict[type, Callable[[Path, Callable[[Row], None]], ReadBack]] = {
    CsvReport: read_csv_report,
    JsonlReport: read_jsonl_report,
}


@dataclass
class OpenedReports:
    writers: list[ReportWriter]
    done: set[str] = field(default_factory=set)  # paths already in the reports
    resumed: int = 0  # rows read back
    repaired: list[Path] = field(default_factory=list)  # reports whose cut last row was dropped

    def write(self, row: Row) -> None:
        for writer in self.writers:
            writer.write(row)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def _check_threshold(path: Path, row: Row, threshold: float) -> None:
    if abs(row.threshold - threshold) > THRESHOLD_TOLERANCE:
        raise DataError(
            f"cannot resume: {path} was written at threshold {row.threshold:g}, "
            f"this scan uses {threshold:g}",
            hint=f"pass --threshold {row.threshold!r} to continue it, or --overwrite",
        )


def _present(kinds: list[tuple[Path, type]]) -> list[tuple[Path, type]]:
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
    on_resumed_row: Callable[[Row], None] = lambda row: None,
) -> OpenedReports:
    """Writers for the requested reports; ``on_resumed_row`` sees each earlier row once."""
    check_reports(csv, jsonl, existing)
    kinds = [(path, kind) for path, kind in ((csv, CsvReport), (jsonl, JsonlReport)) if path]
    present = _present(kinds)
    if existing != "resume" or not present:
        return OpenedReports([kind(path) for path, kind in kinds])

    # Read every present report (nothing is modified yet).
    keys: dict[Path, set[str]] = {}
    backs: dict[Path, ReadBack] = {}
    seen: set[str] = set()
    for path, kind in present:
        own: set[str] = set()

        def take(row: Row, path: Path = path, own: set[str] = own) -> None:
            _check_threshold(path, row, threshold)
            own.add(row.path)
            if row.path not in seen:
                seen.add(row.path)
                on_resumed_row(row)

        backs[path] = _READERS[kind](path, take)
        keys[path] = own

    # Make them agree: rows one report has and another lacks are copied across.
    writers: list[ReportWriter] = []
    for path, kind in kinds:
        if path in backs:
            truncate_cut_row(path, backs[path])
        writer = kind(path, append=path in backs)
        writers.append(writer)
        missing = seen - keys.get(path, set())
        for other, other_kind in present:
            if not missing or other == path:
                continue

            def copy(row: Row, writer: ReportWriter = writer, missing: set[str] = missing) -> None:
                if row.path in missing:
                    writer.write(row)
                    missing.discard(row.path)

            _READERS[other_kind](other, copy)
    return OpenedReports(
        writers,
        done=seen,
        resumed=len(seen),
        repaired=[path for path, back in backs.items() if back.cut],
    )

"""Per-file reports (CSV and JSON Lines), written as results arrive and read back to resume.

Every row is flushed when written, so a scan that is killed keeps all it finished; at worst the
last row is cut mid-write. Reading back keeps the complete rows and reports where they end, so
resuming truncates the cut row and appends: no file is lost and none appears twice.

Every row names the model that scored it (``model_sha256``, the SHA-256 of the .onnx file, next
to ``threshold``): a column rather than a sidecar file, so the identity is flushed in the same
line as the score it vouches for (nothing to keep in sync, rename atomically or lose), and a
report that is copied, split or concatenated still says, row by row, which model wrote it.

Paths are written exactly as discovery produced them (the scanned folder as given + the
relative path). File names that are not valid UTF-8 survive the round trip: the CSV keeps their
bytes (``surrogateescape``, like ``ls``), the JSONL escapes them (``\\udcXX``) and stays UTF-8.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from ..errors import DataError
from ..labels import FAKE, REAL
from .core import Scored

T = TypeVar("T")
# Reports' text: UTF-8, and file names that are not UTF-8 kept as their bytes
ENCODING, ERRORS = "utf-8", "surrogateescape"


def _open_text(path: Path, append: bool, newline: str | None = None) -> IO[str]:
    """A report file opened for writing (appending to resume), with the reports' encoding."""
    mode = "a" if append else "w"
    return open(path, mode, encoding=ENCODING, errors=ERRORS, newline=newline)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a report: a file's score and verdict, or the error that kept it from one.

    This is the one definition of the report format (CSV header, JSONL keys, column order):
    every engine and every reader goes through it. Columns are written and parsed by name
    (:data:`COLUMNS`), so a new field here is a new column of both reports.
    """

    path: str
    generator: str
    p_fake: float | None
    verdict: str | None  # FAKE / REAL; None when the file could not be scored
    threshold: float
    model_sha256: str  # the .onnx file's SHA-256 (hex): which model wrote this row
    width: int | None
    height: int | None
    format: str | None
    error: str | None
    provenance: str | None = None  # what the file declares about itself (see provenance/)
    provenance_detail: str | None = None  # compact JSON, size-capped

    @classmethod
    def from_scored(cls, s: Scored, threshold: float, model_sha256: str) -> Row:
        """The row of one file's outcome: the scan adds the verdict and the model; every other
        column is the :class:`Scored` field of the same name."""
        verdict = None if s.p_fake is None else (FAKE if s.p_fake >= threshold else REAL)
        decided: dict[str, Any] = {
            "verdict": verdict,
            "threshold": threshold,
            "model_sha256": model_sha256,
        }
        outcome = {name: getattr(s, name) for name in COLUMNS if name not in decided}
        return cls(**decided, **outcome)

    def cells(self) -> dict[str, Any]:
        """The columns by name, in order, as the row holds them."""
        return {name: getattr(self, name) for name in COLUMNS}

    def to_record(self) -> dict[str, object]:
        """JSON-ready values; p_fake rounded as in the CSV so both files say the same.

        ``provenance_detail`` is embedded as a JSON object (it is one, serialised compactly).
        """
        record = self.cells()
        record["p_fake"] = None if self.p_fake is None else round(self.p_fake, 6)
        if self.provenance_detail is not None:
            record["provenance_detail"] = json.loads(self.provenance_detail)
        return record

    def to_csv(self) -> list[str]:
        """The CSV cells: p_fake to 6 decimals, the threshold exactly (``repr``), None empty."""
        cells = self.cells()
        cells["p_fake"] = None if self.p_fake is None else f"{self.p_fake:.6f}"
        cells["threshold"] = repr(float(self.threshold))
        return ["" if v is None else str(v) for v in cells.values()]

    @classmethod
    def from_record(cls, r: dict[str, object]) -> Row:
        """Parse a CSV or JSONL record; ValueError (or TypeError) when it is not a row."""
        if set(r) != set(COLUMNS):
            raise ValueError("columns differ")
        return cls(**{name: _PARSE[name](r[name]) for name in COLUMNS})


COLUMNS = tuple(f.name for f in fields(Row))  # the report format, in order
# The format before reports named their model (dfscan ≤ 0.1.0 at commit fe377ba): recognised
# only to refuse resuming it with a clear message.
LEGACY_COLUMNS = (
    "path", "generator", "p_fake", "verdict", "threshold", "width", "height", "format", "error",
)  # fmt: skip


def compact_json(value: object) -> str:
    """The one serialisation of ``provenance_detail``: compact, key order kept, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _legacy(path: Path) -> DataError:
    return DataError(
        f"cannot use {path}: it was written by an older dfscan whose reports do not "
        "record the model (no model_sha256 column)",
        hint="pass --overwrite to scan again into it, or another report file",
    )


def _optional(value: object, kind: Callable[[Any], T]) -> T | None:
    """An empty CSV cell or a JSON null is None; anything else must parse as ``kind``."""
    return None if value in ("", None) else kind(value)


def _verdict(value: object) -> str | None:
    verdict = _optional(value, str)
    if verdict not in (FAKE, REAL, None):
        raise ValueError(f"verdict {verdict!r}")
    return verdict


def _sha256(value: object) -> str:
    sha = str(value)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"model_sha256 {sha!r}")
    return sha


def _threshold(value: object) -> float:
    if not isinstance(value, (str, int, float)):  # CSV text or a JSON number
        raise TypeError(f"threshold {value!r}")
    return float(value)


def _detail(value: object) -> str | None:
    """``provenance_detail``: a JSON object (JSONL) or its compact text (CSV)."""
    if isinstance(value, (dict, list)):
        return compact_json(value)
    if value not in ("", None):
        json.loads(str(value))  # must be JSON
    return _optional(value, str)


def _optional_of(kind: Callable[[Any], T]) -> Callable[[object], T | None]:
    return lambda value: _optional(value, kind)


# How each column is read back from a CSV cell or a JSON value (Row.from_record)
_PARSE: dict[str, Callable[[object], Any]] = {
    "path": str,
    "generator": str,
    "p_fake": _optional_of(float),
    "verdict": _verdict,
    "threshold": _threshold,
    "model_sha256": _sha256,
    "width": _optional_of(int),
    "height": _optional_of(int),
    "format": _optional_of(str),
    "error": _optional_of(str),
    "provenance": _optional_of(str),
    "provenance_detail": _detail,
}


class ReportWriter(Protocol):
    path: Path

    def write(self, row: Row) -> None: ...

    def close(self) -> None: ...


class CsvReport:
    """``path,generator,p_fake,…`` with a header; one flushed line per file."""

    suffix = "CSV"

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = _open_text(path, append, newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if self._file.tell() == 0:
            self._writer.writerow(COLUMNS)
            self._file.flush()

    def write(self, row: Row) -> None:
        self._writer.writerow(row.to_csv())
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class JsonlReport:
    """One JSON object per line, same fields as the CSV (null for missing values)."""

    suffix = "JSONL"

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = _open_text(path, append)

    def write(self, row: Row) -> None:
        text = json.dumps(row.to_record(), ensure_ascii=False)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a non-UTF-8 file name: \udcXX escapes keep it valid
                text = json.dumps(row.to_record())
        self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class ReadBack:
    """How much of an existing report is complete rows."""

    n_rows: int
    valid_bytes: int  # the file's length without its cut last row (or cut header)
    size: int

    @property
    def cut(self) -> bool:
        return self.valid_bytes < self.size


class _Lines:
    """Newline-terminated lines of a file with the byte offset past each; a cut tail is left out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = 0  # offset just past the last line handed out
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                self.end += len(raw)
                yield raw.decode(ENCODING, ERRORS)
        self.exhausted = True


def _not_a_report(path: Path, where: str) -> DataError:
    return DataError(
        f"cannot use {path}: {where} is not a dfscan report row",
        hint="pass another file, or --overwrite to start it again",
    )


class _LastOnly:
    """Tolerates one unparsable record, as long as no complete row follows it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad: str | None = None

    def good(self) -> None:
        if self.bad is not None:
            raise _not_a_report(self.path, self.bad)

    def bad_record(self, where: str) -> None:
        self.good()
        self.bad = where


def read_csv_report(path: Path, on_row: Callable[[Row], None]) -> ReadBack:
    """Pass each complete row of a CSV report to ``on_row``; only the last may be cut."""
    size = path.stat().st_size
    lines = _Lines(path)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if header is None:  # empty, or killed while writing the header
        return ReadBack(0, 0, size)
    if tuple(header) == LEGACY_COLUMNS:
        raise _legacy(path)
    if tuple(header) != COLUMNS:
        raise DataError(
            f"cannot use {path}: its header is not a dfscan report's",
            hint="pass another --csv file, or --overwrite to replace it",
        )
    n, valid, record_no, last = 0, lines.end, 1, _LastOnly(path)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            if lines.exhausted:  # a quoted field cut after one of its newlines
                break
            raise _not_a_report(path, f"record {record_no + 1}") from None
        record_no += 1
        try:
            row = Row.from_record(dict(zip(COLUMNS, fields, strict=True)))
        except (ValueError, TypeError):
            last.bad_record(f"record {record_no}")
            continue
        last.good()
        on_row(row)
        n, valid = n + 1, lines.end
    return ReadBack(n, valid, size)


def read_jsonl_report(path: Path, on_row: Callable[[Row], None]) -> ReadBack:
    """Pass each complete row of a JSONL report to ``on_row``; only the last may be cut."""
    size = path.stat().st_size
    lines = _Lines(path)
    n, valid, last = 0, 0, _LastOnly(path)
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if n == 0 and isinstance(record, dict) and tuple(record) == LEGACY_COLUMNS:
                raise _legacy(path)
            row = Row.from_record(record)
        except (ValueError, TypeError, AttributeError):
            last.bad_record(f"line {i}")
            continue
        last.good()
        on_row(row)
        n, valid = n + 1, lines.end
    return ReadBack(n, valid, size)


def truncate_cut_row(path: Path, back: ReadBack) -> None:
    """Drop the cut last row (if any) so appending continues on a clean line."""
    if back.cut:
        os.truncate(path, back.valid_bytes)

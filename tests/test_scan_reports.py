"""Reports: rows survive the round trip, a write cut at any byte is repaired, resume is exact."""

import json
from pathlib import Path

import pytest

from dfscan.scanner.errors import DataError
from dfscan.scanner.reports import (
    COLUMNS,
    CsvReport,
    JsonlReport,
    Row,
    read_csv_report,
    read_jsonl_report,
)
from dfscan.scanner.resume import open_reports

AWKWARD_PATHS = [
    "data/real/plain.png",
    'data/gan/comma, "quote".png',
    "data/gan/new\nline.jpg",
    "data/odd/ünïcødé 图像.webp",
    "data/odd/not-utf8-\udcff.png",  # a file name with an undecodable byte
]


def make_rows(threshold: float = 0.5) -> list[Row]:
    rows = []
    for i, path in enumerate(AWKWARD_PATHS):
        if i == 2:
            rows.append(Row(path, "gan", None, None, threshold, None, None, None, "truncated"))
        else:
            p = i / 7
            verdict = "fake" if p >= threshold else "real"
            rows.append(Row(path, path.split("/")[1], p, verdict, threshold, 64, 48, "PNG", None))
    return rows


def write_all(kind, path: Path, rows: list[Row]) -> None:
    report = kind(path)
    for row in rows:
        report.write(row)
    report.close()


def collect(reader, path: Path) -> tuple[list[Row], object]:
    rows: list[Row] = []
    back = reader(path, rows.append)
    return rows, back


@pytest.mark.parametrize(
    "kind,reader", [(CsvReport, read_csv_report), (JsonlReport, read_jsonl_report)]
)
def test_round_trip(tmp_path: Path, kind, reader):
    rows = make_rows()
    path = tmp_path / "out"
    write_all(kind, path, rows)
    back, info = collect(reader, path)
    assert [r.path for r in back] == AWKWARD_PATHS
    assert back[2].error == "truncated" and back[2].p_fake is None and back[2].verdict is None
    assert back[1].p_fake == pytest.approx(1 / 7, abs=1e-6) and back[1].width == 64
    assert not info.cut


@pytest.mark.parametrize(
    "kind,reader", [(CsvReport, read_csv_report), (JsonlReport, read_jsonl_report)]
)
def test_a_write_cut_at_any_byte_keeps_exactly_the_complete_rows(tmp_path: Path, kind, reader):
    rows = make_rows()
    full = tmp_path / "full"
    ends = []  # file size after each complete row
    report = kind(full)
    for row in rows:
        report.write(row)
        ends.append(full.stat().st_size)
    report.close()
    data = full.read_bytes()
    cut = tmp_path / "cut"
    for length in range(len(data) + 1):
        cut.write_bytes(data[:length])
        back, info = collect(reader, cut)
        complete = sum(end <= length for end in ends)
        assert [r.path for r in back] == AWKWARD_PATHS[:complete], length
        assert info.valid_bytes == (ends[complete - 1] if complete else info.valid_bytes)


def test_a_damaged_row_in_the_middle_is_refused_not_truncated(tmp_path: Path):
    path = tmp_path / "out.csv"
    write_all(CsvReport, path, make_rows())
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    lines[1] = "garbage,row"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    before = path.read_bytes()
    with pytest.raises(DataError, match="record 2 is not a dfscan report row"):
        open_reports(path, None, "resume", 0.5)
    assert path.read_bytes() == before


def test_a_foreign_csv_is_refused(tmp_path: Path):
    path = tmp_path / "mine.csv"
    path.write_text("name,score\na,1\n")
    with pytest.raises(DataError, match="header is not a dfscan report"):
        open_reports(path, None, "resume", 0.5)
    assert path.read_text() == "name,score\na,1\n"


def test_existing_reports_are_refused_unless_resumed_or_overwritten(tmp_path: Path):
    path = tmp_path / "out.csv"
    write_all(CsvReport, path, make_rows())
    with pytest.raises(DataError, match="already exists"):
        open_reports(path, None, "refuse", 0.5)
    opened = open_reports(path, None, "overwrite", 0.5)
    opened.close()
    assert path.read_text() == ",".join(COLUMNS) + "\n"


def test_resume_with_another_threshold_is_refused(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    write_all(JsonlReport, path, make_rows(threshold=0.3))
    with pytest.raises(DataError, match=r"threshold 0\.3"):
        open_reports(None, path, "resume", 0.5)


def test_resume_repairs_the_cut_row_and_makes_csv_and_jsonl_agree(tmp_path: Path):
    rows = make_rows()
    csv_path, jsonl_path = tmp_path / "out.csv", tmp_path / "out.jsonl"
    write_all(CsvReport, csv_path, rows[:4])  # the CSV got one row further
    write_all(JsonlReport, jsonl_path, rows[:3])
    with open(csv_path, "ab") as f:
        f.write(b"data/real/half-written.png,real,0.12")  # killed mid-write
    resumed: list[Row] = []
    opened = open_reports(csv_path, jsonl_path, "resume", 0.5, resumed.append)
    opened.write(rows[4])
    opened.close()
    assert opened.done == set(AWKWARD_PATHS[:4])
    assert [r.path for r in resumed] == AWKWARD_PATHS[:4]  # each earlier row once
    assert opened.repaired == [csv_path]
    for reader, path in ((read_csv_report, csv_path), (read_jsonl_report, jsonl_path)):
        back, info = collect(reader, path)
        assert sorted(r.path for r in back) == sorted(AWKWARD_PATHS), path
        assert not info.cut
    first = json.loads(jsonl_path.read_text(encoding="utf-8").splitlines()[0])  # valid UTF-8
    assert list(first) == list(COLUMNS)


def test_resume_needs_a_report(tmp_path: Path):
    with pytest.raises(DataError, match="--resume needs"):
        open_reports(None, None, "resume", 0.5)

"""Reports: rows survive the round trip, a write cut at any byte is repaired, resume is exact."""

import csv
import json
from pathlib import Path

import pytest

from dfscan.scanner.errors import DataError
from dfscan.scanner.scan.core import SCORED_FIELDS, Scored
from dfscan.scanner.scan.reports import (
    COLUMNS,
    LEGACY_COLUMNS,
    CsvReport,
    JsonlReport,
    Row,
    read_csv_report,
    read_jsonl_report,
)
from dfscan.scanner.scan.resume import open_reports

AWKWARD_PATHS = [
    "data/real/plain.png",
    'data/gan/comma, "quote".png',
    "data/gan/new\nline.jpg",
    "data/odd/ünïcødé 图像.webp",
    "data/odd/not-utf8-\udcff.png",  # a file name with an undecodable byte
]


SHA = "a" * 64  # the model that wrote make_rows()
OTHER_SHA = "b" * 64


def make_rows(threshold: float = 0.5, sha: str = SHA) -> list[Row]:
    rows = []
    for i, path in enumerate(AWKWARD_PATHS):
        if i == 2:
            rows.append(Row(path, "gan", None, None, threshold, sha, None, None, None, "truncated"))
        else:
            p = i / 7
            verdict = "fake" if p >= threshold else "real"
            detail = '{"png":{"tool":"comfyui","keys":["prompt"]},"note":"ünï, \\"q\\""}'
            prov = ("png:comfyui", detail) if i == 3 else (None, None)
            generator = path.split("/")[1]
            rows.append(
                Row(path, generator, p, verdict, threshold, sha, 64, 48, "PNG", None, *prov)
            )
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
    assert [r.model_sha256 for r in back] == [SHA] * len(rows)
    assert back[3].provenance == "png:comfyui"
    assert back[3].provenance_detail == rows[3].provenance_detail  # the same string, both kinds
    assert back[0].provenance is None and back[0].provenance_detail is None
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
    # where the complete rows start: after the CSV header, at 0 for JSONL
    start = data.index(b"\n") + 1 if kind is CsvReport else 0
    cut = tmp_path / "cut"
    for length in range(len(data) + 1):
        cut.write_bytes(data[:length])
        back, info = collect(reader, cut)
        complete = sum(end <= length for end in ends)
        assert [r.path for r in back] == AWKWARD_PATHS[:complete], length
        # with no complete row, only a whole header is kept (a cut one is dropped too)
        expected = ends[complete - 1] if complete else (start if length >= start else 0)
        assert info.valid_bytes == expected, length
        assert info.size == length and info.cut == (expected < length)


def test_a_damaged_row_in_the_middle_is_refused_not_truncated(tmp_path: Path):
    path = tmp_path / "out.csv"
    write_all(CsvReport, path, make_rows())
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    lines[1] = "garbage,row"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    before = path.read_bytes()
    with pytest.raises(DataError, match="record 2 is not a dfscan report row"):
        open_reports(path, None, "resume", 0.5, SHA)
    assert path.read_bytes() == before


def test_a_foreign_csv_is_refused(tmp_path: Path):
    path = tmp_path / "mine.csv"
    path.write_text("name,score\na,1\n")
    with pytest.raises(DataError, match="header is not a dfscan report"):
        open_reports(path, None, "resume", 0.5, SHA)
    assert path.read_text() == "name,score\na,1\n"


def test_existing_reports_are_refused_unless_resumed_or_overwritten(tmp_path: Path):
    path = tmp_path / "out.csv"
    write_all(CsvReport, path, make_rows())
    with pytest.raises(DataError, match="already exists"):
        open_reports(path, None, "refuse", 0.5, SHA)
    opened = open_reports(path, None, "overwrite", 0.5, SHA)
    opened.close()
    assert path.read_text() == ",".join(COLUMNS) + "\n"


def test_resume_with_another_threshold_is_refused(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    write_all(JsonlReport, path, make_rows(threshold=0.3))
    with pytest.raises(DataError, match=r"threshold 0\.3"):
        open_reports(None, path, "resume", 0.5, SHA)


@pytest.mark.parametrize("kind", [CsvReport, JsonlReport])
def test_a_threshold_refusal_prints_both_values_exactly(tmp_path: Path, kind):
    written, now = 0.4627861, 0.46278612  # equal to 6 significant digits
    path = tmp_path / "out"
    write_all(kind, path, make_rows(threshold=written))
    before = path.read_bytes()
    args = (path, None) if kind is CsvReport else (None, path)
    with pytest.raises(DataError) as info:
        open_reports(*args, "resume", now, SHA)
    assert f"threshold {written!r}, this scan uses {now!r}" in info.value.message
    assert f"--threshold {written!r}" in info.value.hint
    assert path.read_bytes() == before
    # an exact match resumes: the threshold survives the round trip unrounded
    open_reports(*args, "resume", written, SHA).close()


@pytest.mark.parametrize("both", [False, True])
def test_resume_with_another_model_is_refused_and_changes_nothing(tmp_path: Path, both: bool):
    csv_path, jsonl_path = tmp_path / "out.csv", tmp_path / "out.jsonl"
    rows = make_rows()
    write_all(CsvReport, csv_path, rows[:3])
    with open(csv_path, "ab") as f:
        f.write(b"data/real/half-written.png,real,0.12")  # a cut row it would otherwise repair
    if both:
        write_all(JsonlReport, jsonl_path, rows[:2])  # it would otherwise copy a row across
    before = {p: p.read_bytes() for p in (csv_path, jsonl_path) if p.exists()}
    with pytest.raises(DataError, match=rf"sha256 {SHA}.*sha256 {OTHER_SHA}"):
        open_reports(csv_path, jsonl_path if both else None, "resume", 0.5, OTHER_SHA)
    assert {p: p.read_bytes() for p in before} == before


def test_a_report_from_before_model_identity_is_refused_with_a_clear_line(tmp_path: Path):
    path = tmp_path / "old.csv"
    path.write_text(",".join(LEGACY_COLUMNS) + "\na.png,(root),0.1,real,0.5,8,8,PNG,\n")
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"older dfscan.*no model_sha256"):
        open_reports(path, None, "resume", 0.5, SHA)
    old_jsonl = tmp_path / "old.jsonl"
    old_jsonl.write_text(json.dumps(dict.fromkeys(LEGACY_COLUMNS, None)) + "\n")
    with pytest.raises(DataError, match="older dfscan"):
        open_reports(None, old_jsonl, "resume", 0.5, SHA)
    assert path.read_bytes() == before


def test_retry_errors_takes_the_error_rows_out_and_keeps_the_rest(tmp_path: Path):
    rows = make_rows()
    csv_path, jsonl_path = tmp_path / "out.csv", tmp_path / "out.jsonl"
    write_all(CsvReport, csv_path, rows)
    write_all(JsonlReport, jsonl_path, rows[:4])  # behind by one row
    resumed: list[Row] = []
    opened = open_reports(csv_path, jsonl_path, "resume", 0.5, SHA, resumed.append, True)
    errored = AWKWARD_PATHS[2]
    assert opened.retried == 1 and errored not in opened.done
    assert opened.done == set(AWKWARD_PATHS) - {errored}
    assert all(r.error is None for r in resumed) and len(resumed) == 4
    rescanned = Row(errored, "gan", 0.9, "fake", 0.5, SHA, 8, 8, "JPEG", None)
    opened.write(rescanned)
    opened.close()
    for reader, path in ((read_csv_report, csv_path), (read_jsonl_report, jsonl_path)):
        back, _ = collect(reader, path)
        assert sorted(r.path for r in back) == sorted(AWKWARD_PATHS), path  # each file once
        assert next(r for r in back if r.path == errored) == rescanned
    assert not list(tmp_path.glob("*.tmp"))
    # without the flag the error row counts as done
    plain = open_reports(csv_path, None, "resume", 0.5, SHA)
    plain.close()
    assert errored in plain.done and plain.retried == 0
    with pytest.raises(DataError, match="with --resume"):
        open_reports(csv_path, None, "overwrite", 0.5, SHA, retry_errors=True)


def test_resume_repairs_the_cut_row_and_makes_csv_and_jsonl_agree(tmp_path: Path):
    rows = make_rows()
    csv_path, jsonl_path = tmp_path / "out.csv", tmp_path / "out.jsonl"
    write_all(CsvReport, csv_path, rows[:4])  # the CSV got one row further
    write_all(JsonlReport, jsonl_path, rows[:3])
    with open(csv_path, "ab") as f:
        f.write(b"data/real/half-written.png,real,0.12")  # killed mid-write
    resumed: list[Row] = []
    opened = open_reports(csv_path, jsonl_path, "resume", 0.5, SHA, resumed.append)
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
        open_reports(None, None, "resume", 0.5, SHA)


def full_outcome() -> Scored:
    """A file's outcome with a value in every field (none empty, so each shows in a report)."""
    detail = '{"png":{"tool":"comfyui"}}'
    values = dict(path="data/gan/a.png", generator="gan", p_fake=0.75, width=64, height=48)
    values.update(format="PNG", animated=True, error="x", provenance="png:comfyui")
    return Scored(**values, provenance_detail=detail)


def test_columns_are_declared_once_and_every_report_and_record_carries_them(tmp_path: Path):
    """Row's fields are the CSV header, the JSONL keys and what the scan fills from a file's
    outcome: a field added to Row (or Scored) and not carried everywhere fails here."""
    scored = full_outcome()
    assert set(scored.to_record()) == set(SCORED_FIELDS)  # the Ray actors' record
    assert Scored.from_record(json.loads(json.dumps(scored.to_record()))) == scored
    row = Row.from_scored(scored, 0.5, SHA)
    decided = {"verdict": "fake", "threshold": 0.5, "model_sha256": SHA}
    assert set(COLUMNS) - set(SCORED_FIELDS) == set(decided)  # the rest comes from Scored
    for name in COLUMNS:
        assert getattr(row, name) == decided.get(name, getattr(scored, name, None)), name
    csv_path, jsonl_path = tmp_path / "out.csv", tmp_path / "out.jsonl"
    write_all(CsvReport, csv_path, [row])
    write_all(JsonlReport, jsonl_path, [row])
    with open(csv_path, newline="", encoding="utf-8") as f:
        (header, cells) = list(csv.reader(f))
    assert header == list(COLUMNS) and all(cells), dict(zip(header, cells, strict=True))
    record = json.loads(jsonl_path.read_text(encoding="utf-8"))
    assert list(record) == list(COLUMNS) and None not in record.values()
    for reader, path in ((read_csv_report, csv_path), (read_jsonl_report, jsonl_path)):
        assert collect(reader, path)[0] == [row], path  # and every column is read back

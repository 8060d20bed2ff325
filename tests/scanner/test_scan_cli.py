"""``dfscan scan`` / ``dfscan FOLDER``: output, files written, exit codes, and a torch-free base."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app, command_names, route
from dfscan.scanner.model.runtime import CUDA, available_providers

from ..conftest import write_image
from ..onnx_models import brightness_meta, brightness_model, grey

runner = CliRunner()


def scan(*args) -> object:
    return runner.invoke(app, ["scan", *(str(a) for a in args), "--device", "cpu"])


def labelled_folder(root: Path) -> Path:
    """real: 3 dark + 1 bright (a false positive); gan: 3 bright + 1 dark (a miss); 1 broken."""
    for i, v in enumerate((10, 20, 30, 240)):
        write_image(root / "real" / f"r{i}.png", grey(v))
    for i, v in enumerate((250, 240, 230, 5)):
        write_image(root / "gan" / f"g{i}.png", grey(v))
    (root / "gan" / "broken.png").write_bytes(b"")
    write_image(root / "loose.png", grey(128))
    return root


def test_scan_writes_reports_and_a_plain_table(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    out, jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"
    result = scan(data, "-m", brightness_onnx, "--csv", out, "--jsonl", jsonl)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "brightness.onnx · threshold 0.5"
    table = {line.split()[0]: line.split()[1:] for line in lines[1:] if line[:1].isalpha()}
    #                images flagged %fake  mean   errors accuracy
    assert table["real"] == ["4", "1", "25.0%", "0.294", "0", "75.0%"]
    assert table["gan"] == ["4", "3", "75.0%", "0.711", "1", "75.0%"]
    assert table["total"][:2] == ["9", "5"] and table["total"][-2:] == ["1", "75.0%"]
    assert "(root)" in result.stdout and "false-positive rate on real: 25.0% (1 of 4)" in lines
    assert "img/s" in result.stderr  # the progress bar and the closing note
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 == len(jsonl.read_text().splitlines())
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["error"].startswith("not a readable image") and broken["verdict"] == ""


def test_no_accuracy_without_a_real_folder(tmp_path: Path, brightness_onnx: Path):
    write_image(tmp_path / "photos" / "trip" / "a.png", grey(200))
    result = scan(tmp_path / "photos", "-m", brightness_onnx, "-q")
    assert result.exit_code == 0, result.output
    assert "accuracy" not in result.stdout and "false-positive" not in result.stdout
    assert "img/s" not in result.stderr  # --quiet: no bar, no notes


def test_summary_json(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    result = scan(data, "-m", brightness_onnx, "--summary-json", "-", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout is only the JSON
    assert summary["generators"]["real"]["accuracy"] == 0.75
    assert summary["false_positive_rate"] == 0.25
    assert summary["total"]["errors"] == 1 and summary["files_scanned"] == 10
    path = tmp_path / "sub" / "summary.json"
    assert scan(data, "-m", brightness_onnx, "--summary-json", path, "-q").exit_code == 0
    assert json.loads(path.read_text())["threshold"] == 0.5


def test_summary_counts_the_duplicate_files_skipped(tmp_path: Path, brightness_onnx: Path):
    data = tmp_path / "data"
    write_image(data / "real" / "a.png", grey(10))
    write_image(data / "real" / "b.png", grey(20))
    (data / "gan").mkdir()
    (data / "gan" / "link.png").symlink_to(data / "real" / "a.png")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "same").symlink_to(data / "real")  # a second root, the same files
    html = tmp_path / "scan.html"
    result = scan(data, tmp_path / "other", "-m", brightness_onnx, "--html", html, "-q")
    assert result.exit_code == 0, result.output
    assert "skipped 3 duplicates: files reached again through a link" in result.stdout
    assert "duplicate files skipped" in html.read_text()
    summary = json.loads(scan(data, "-m", brightness_onnx, "--summary-json", "-", "-q").stdout)
    assert summary["duplicates_skipped"] == 1 and summary["files_scanned"] == 2
    once = scan(data / "real", "-m", brightness_onnx, "-q")
    assert once.exit_code == 0 and "duplicate" not in once.stdout


def test_threshold_and_fail_on_fake(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    assert scan(data, "-m", brightness_onnx, "--fail-on-fake", "-q").exit_code == 1
    strict = scan(data, "-m", brightness_onnx, "--fail-on-fake", "--threshold", "0.99", "-q")
    assert strict.exit_code == 0 and "threshold 0.99" in strict.stdout


def test_resume_from_the_cli(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "out.csv"
    assert scan(data, "-m", brightness_onnx, "--csv", out, "-q").exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:10])  # 3 rows, then a cut one
    refused = scan(data, "-m", brightness_onnx, "--csv", out, "-q")
    assert refused.exit_code == 2 and "--resume" in refused.stderr
    resumed = scan(data, "-m", brightness_onnx, "--csv", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "3 from an earlier run" in resumed.stderr and "cut mid-write" in resumed.stderr
    assert sorted(out.read_text().splitlines()) == sorted(line.rstrip("\n") for line in lines)
    assert "gan" in resumed.stdout and "75.0%" in resumed.stdout  # tallies include old rows


def test_resume_with_another_model_exits_2_and_leaves_the_report_as_it_was(
    tmp_path: Path, brightness_onnx: Path
):
    data = labelled_folder(tmp_path / "data")
    out, jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"
    assert scan(data, "-m", brightness_onnx, "--csv", out, "--jsonl", jsonl, "-q").exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:10])  # interrupted: 3 rows and a cut one
    before = {p: p.read_bytes() for p in (out, jsonl)}
    header = lines[0].rstrip("\n").split(",")
    sha = lines[1].split(",")[header.index("model_sha256")]
    assert sha == hashlib.sha256(brightness_onnx.read_bytes()).hexdigest()
    other = brightness_model(tmp_path / "other.onnx", brightness_meta(size=8))  # same threshold
    for reports in (["--csv", out], ["--csv", out, "--jsonl", jsonl], ["--jsonl", jsonl]):
        refused = scan(data, "-m", other, *reports, "--resume", "-q")
        one_line_error(refused, 2, "cannot resume")
        said = " ".join(refused.output.split())  # Rich wraps long lines
        assert f"written by the model with sha256 {sha}; this scan's model has sha256" in said
        assert {p: p.read_bytes() for p in (out, jsonl)} == before


def test_retry_errors_rescans_the_files_that_failed(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "out.csv"
    assert scan(data, "-m", brightness_onnx, "--csv", out, "-q").exit_code == 0
    write_image(data / "gan" / "broken.png", grey(255))  # the file was repaired since
    plain = scan(data, "-m", brightness_onnx, "--csv", out, "--resume", "-q")
    assert plain.exit_code == 0
    with open(out, newline="") as f:
        assert sum(bool(r["error"]) for r in csv.DictReader(f)) == 1  # an error row is done
    again = scan(data, "-m", brightness_onnx, "--csv", out, "--resume", "--retry-errors")
    assert again.exit_code == 0, again.output
    assert "1 error row scanned again" in again.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and not any(r["error"] for r in rows)
    fixed = next(r for r in rows if r["path"].endswith("broken.png"))
    assert fixed["p_fake"] == "1.000000" and fixed["verdict"] == "fake"
    one_line_error(scan(data, "-m", brightness_onnx, "--csv", out, "--retry-errors"), 2, "--resume")


def test_ctrl_c_exits_130_and_points_at_resume(tmp_path: Path, brightness_onnx, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dfscan.scanner.scan.run.run_scan", interrupted)
    data = labelled_folder(tmp_path / "data")
    result = scan(data, "-m", brightness_onnx, "--csv", tmp_path / "o.csv")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "--resume" in result.stderr


def test_resume_without_a_report_yet_starts_one(tmp_path: Path, brightness_onnx: Path):
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "new.csv"
    assert scan(data, "-m", brightness_onnx, "--csv", out, "--resume", "-q").exit_code == 0
    assert len(out.read_text().splitlines()) == 11


def one_line_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert text in result.output, result.output


def test_input_errors_exit_2(tmp_path: Path, brightness_onnx: Path):
    one_line_error(scan(tmp_path / "nope", "-m", brightness_onnx), 2, "folder not found")
    (tmp_path / "empty").mkdir()
    one_line_error(scan(tmp_path / "empty", "-m", brightness_onnx), 2, "no images found")
    data = labelled_folder(tmp_path / "data")
    both = scan(data, "-m", brightness_onnx, "--csv", tmp_path / "o.csv", "--resume", "--overwrite")
    one_line_error(both, 2, "--resume")


def test_unusable_models_exit_4(tmp_path: Path):
    data = labelled_folder(tmp_path / "data")
    foreign = brightness_model(tmp_path / "foreign.onnx", metadata=False)
    one_line_error(scan(data, "-m", foreign), 4, "without dfscan metadata")
    corrupted = tmp_path / "corrupted.onnx"
    corrupted.write_bytes(b"\x00garbage" * 20)
    one_line_error(scan(data, "-m", corrupted), 4, "not a usable ONNX model")
    one_line_error(scan(data, "-m", tmp_path / "missing.onnx"), 4, "model not found")


def test_unavailable_device_exits_5(tmp_path: Path, brightness_onnx: Path):
    if CUDA in available_providers():
        from dfscan.scanner.model.runtime import open_session

        try:
            open_session(brightness_onnx, "cuda")
            pytest.skip("CUDA works on this machine")
        except Exception:
            pass
    data = labelled_folder(tmp_path / "data")
    result = runner.invoke(app, ["scan", str(data), "-m", str(brightness_onnx), "--device", "cuda"])
    one_line_error(result, 5, "CUDA is not available")


def test_routing_sends_unknown_first_arguments_to_scan():
    commands = command_names()
    assert "scan" in commands and "train" in commands
    assert route(["photos/", "-m", "m.onnx"], commands) == ["scan", "photos/", "-m", "m.onnx"]
    assert route(["--debug", "photos/"], commands) == ["--debug", "scan", "photos/"]
    assert route(["-m", "m.onnx", "photos/"], commands) == ["scan", "-m", "m.onnx", "photos/"]
    for argv in (["train", "data/"], ["scan", "x"], ["--help"], ["--version"], []):
        assert route(argv, commands) == argv
    assert route(["bench", "-m", "m.onnx"], commands) == ["bench", "-m", "m.onnx"]
    without_bench = [c for c in commands if c != "bench"]
    assert route(["bench"], without_bench) == ["scan", "bench"]  # a folder named like no command


def test_dfscan_folder_runs_without_torch_or_onnx(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx", brightness_meta(threshold=0.7))
    data = labelled_folder(tmp_path / "data")
    out = tmp_path / "out.csv"
    code = (
        "import sys\n"
        "from dfscan.scanner.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('heavy', 'torch' in sys.modules, 'onnx' in sys.modules)\n"
    )
    argv = [str(data), "--model", str(model), "--csv", str(out), "--device", "cpu", "-q"]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert "heavy False False" in done.stdout, done.stdout + done.stderr
    assert "exit 0" in done.stdout and "threshold 0.7" in done.stdout
    assert len(out.read_text().splitlines()) == 11

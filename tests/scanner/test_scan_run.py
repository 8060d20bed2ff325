"""run_scan: an interrupted scan keeps its rows, and resuming it loses and repeats nothing."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.cli.app import EXIT_BUG, main
from dfscan.scanner.errors import DataError
from dfscan.scanner.scan.run import ScanOptions, run_scan

from ..conftest import write_image
from ..onnx_models import grey


def make_folder(root: Path, n: int = 24) -> Path:
    for i in range(n):
        generator = ("real", "gan_a", "gan_b")[i % 3]
        value = 40 if generator == "real" else 220
        write_image(root / generator / f"{i:03d}.png", grey(value + i))
    (root / "gan_b" / "broken.jpg").write_bytes(b"nope")
    return root


class StopAfter:
    """A progress display whose user presses Ctrl-C after ``n`` files."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0
        self.total: int | None = None

    def start(self) -> None:
        pass

    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done == self.n:
            raise KeyboardInterrupt


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_interrupt_then_resume_gives_every_file_once(tmp_path: Path, brightness_onnx: Path):
    data = make_folder(tmp_path / "data")
    out, jsonl = tmp_path / "out.csv", tmp_path / "out.jsonl"
    options = ScanOptions([data], brightness_onnx, csv=out, jsonl=jsonl, device="cpu")
    options.batch_size = 4
    with pytest.raises(KeyboardInterrupt):
        run_scan(options, progress=StopAfter(10))
    assert len(csv_rows(out)) == 10  # flushed as they came
    with open(out, "a", encoding="utf-8") as f:  # and then the process died mid-row
        f.write("data/gan_a/999.png,gan_a,0.8")

    options.existing = "resume"
    result = run_scan(options)
    assert result.resumed == 10 and result.scanned == 25 - 10
    rows = csv_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in data.rglob("*") if p.is_file())
    assert len(jsonl.read_text().splitlines()) == 25
    reference = tmp_path / "ref.csv"
    run_scan(ScanOptions([data], brightness_onnx, csv=reference, device="cpu"))
    assert sorted(map(sorted, (r.items() for r in rows))) == sorted(
        map(sorted, (r.items() for r in csv_rows(reference)))
    )
    # the summary covers the resumed rows too
    assert result.tallies.total().images + result.tallies.total().errors == 25
    assert result.tallies.accuracy("real") == 1.0 and result.tallies.false_positive_rate() == 0.0

    again = run_scan(options)  # nothing left: not an error
    assert again.scanned == 0 and len(csv_rows(out)) == 25


def test_progress_gets_a_total_and_ends_full(tmp_path: Path, brightness_onnx: Path):
    data = make_folder(tmp_path / "data", n=9)
    progress = StopAfter(-1)
    run_scan(ScanOptions([data], brightness_onnx, device="cpu"), progress=progress)
    assert progress.done == progress.total == 10


def test_threshold_option_overrides_the_model(tmp_path: Path, brightness_onnx: Path):
    data = make_folder(tmp_path / "data", n=6)
    result = run_scan(ScanOptions([data], brightness_onnx, threshold=0.95, device="cpu"))
    assert result.threshold == 0.95 and result.tallies.total().flagged == 0


def test_no_images_is_an_error_that_says_what_was_seen(tmp_path: Path, brightness_onnx: Path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images found.*ignored 1 file of other types"):
        run_scan(ScanOptions([empty], brightness_onnx, device="cpu"))


def test_report_refusal_comes_before_any_work(tmp_path: Path):
    data = make_folder(tmp_path / "data", n=3)
    out = tmp_path / "out.csv"
    out.write_text("precious")
    with pytest.raises(DataError, match="already exists"):  # the model is not even opened
        run_scan(ScanOptions([data], tmp_path / "no-model.onnx", csv=out))
    assert out.read_text() == "precious"


def _run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dfscan", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    return int(stopped.value.code or 0)


def test_a_bug_while_decoding_stops_the_scan_with_one_line(
    tmp_path: Path, brightness_onnx: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Not the image's fault (a TypeError is a bug): no error rows, exit 70, one line; the
    same folder scans (exit 0) once the bug is gone, a truncated JPEG still an error row."""
    monkeypatch.setenv("DFSCAN_DEBUG", "0")
    write_image(tmp_path / "data" / "a.png", grey(10))
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    whole = write_image(tmp_path / "data" / "b.jpg", noise)
    (tmp_path / "data" / "cut.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    args = ["scan", str(tmp_path / "data"), "-m", str(brightness_onnx), "--device", "cpu"]

    def bug(*a, **k):
        raise TypeError("unsupported operand type(s)")

    with monkeypatch.context() as patch:
        patch.setattr("dfscan.scanner.scan.core.decode_prepared", bug)
        assert _run_main(monkeypatch, *args, "--csv", str(tmp_path / "bug.csv")) == EXIT_BUG
        err = capsys.readouterr().err
        assert "internal error (a bug): TypeError: unsupported operand" in err
        assert "Traceback" not in err and "--debug" in err
        with pytest.raises(TypeError):  # --debug: the exception itself, with its traceback
            _run_main(monkeypatch, "--debug", *args, "--csv", str(tmp_path / "debug.csv"))

    monkeypatch.setenv("DFSCAN_DEBUG", "0")
    assert _run_main(monkeypatch, *args, "--quiet", "--csv", str(tmp_path / "ok.csv")) == 0
    with open(tmp_path / "ok.csv", newline="", encoding="utf-8") as f:
        errors = {Path(r["path"]).name: r["error"] for r in csv.DictReader(f)}
    assert errors["a.png"] == errors["b.jpg"] == ""
    assert "not a readable image" in errors["cut.jpg"]

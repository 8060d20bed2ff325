"""The scan pipeline: one row per file whatever the file is, in order, in bounded memory."""

import csv
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from dfscan.scanner.errors import DataError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.scanner.scan.core import read_and_decode
from dfscan.scanner.scan.discovery import DiscoveryStats, Found, discover, walk
from dfscan.scanner.scan.pipeline import decode, score
from dfscan.scanner.scan.run import ScanOptions, run_scan

from ..conftest import write_awkward_files, write_image
from ..onnx_models import grey


@pytest.fixture
def detector(brightness_onnx: Path) -> Detector:
    return Detector.from_onnx(brightness_onnx, "cpu")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_awkward_file_is_exactly_one_row(tmp_path: Path, brightness_onnx: Path):
    root = tmp_path / "data"
    expected = write_awkward_files(root)
    out = tmp_path / "out.csv"
    result = run_scan(ScanOptions([root], brightness_onnx, csv=out, device="cpu", batch_size=3))
    rows = {Path(r["path"]).relative_to(root).as_posix(): r for r in read_rows(out)}
    assert sorted(rows) == sorted(expected)  # nothing lost, nothing twice, no folder rows
    for name, expect in expected.items():
        row = rows[name]
        if isinstance(expect, str):
            assert expect in row["error"], (name, row)
            assert row["p_fake"] == row["verdict"] == ""
        else:
            assert row["error"] == "", (name, row)
            assert float(row["p_fake"]) == pytest.approx(expect, abs=0.02), name
    assert (rows["odd/rotated.jpeg"]["width"], rows["odd/rotated.jpeg"]["height"]) == ("20", "40")
    assert rows["odd/cmyk.JPG"]["format"] == "JPEG"
    assert rows["odd/folder.png/inside.PNG"]["generator"] == "odd"
    assert result.animated == 2
    assert result.ignored == 1
    n_errors = sum(isinstance(e, str) for e in expected.values())
    assert result.tallies.total().errors == n_errors
    assert result.tallies.total().images == len(expected) - n_errors


def test_a_file_that_vanishes_after_discovery_is_an_error_row(detector: Detector, tmp_path: Path):
    (scored,) = score([Found(str(tmp_path / "gone.png"), "gan")], detector, workers=0)
    assert scored.p_fake is None and scored.error == "cannot read file: No such file or directory"


def test_order_and_scores_do_not_depend_on_threads_or_batches(detector: Detector, tmp_path: Path):
    values = list(range(0, 256, 9))
    for i, v in enumerate(values):
        write_image(tmp_path / f"g{i % 3}" / f"{i:03d}.png", grey(v))
        if i % 4 == 0:
            (tmp_path / f"g{i % 3}" / f"{i:03d}b.jpg").write_bytes(b"broken")
    files = list(walk(tmp_path))
    runs = [
        [(s.path, s.p_fake, s.error) for s in score(files, detector, batch, workers)]
        for batch, workers in ((1, 0), (4, 2), (64, 3))
    ]
    assert runs[0] == runs[1] == runs[2]
    assert [path for path, _, _ in runs[0]] == [f.path for f in files]
    scores = {Path(path).name: p for path, p, _ in runs[0] if p is not None}
    assert scores["001.png"] == pytest.approx(9 / 255, abs=1e-6)


def counting(found: Found, pulled: list[int]) -> Iterator[Found]:
    """An endless stream of the same file that records how many were taken."""
    for i in itertools.count():
        pulled[0] = i + 1
        yield Found(found.path, found.generator, found.problem)


def test_discovery_is_pulled_lazily_through_a_bounded_window(detector: Detector, tmp_path: Path):
    path = write_image(tmp_path / "a.png", grey(10))
    pulled = [0]
    stream = score(counting(Found(str(path), "g"), pulled), detector, batch_size=4, workers=2)
    first = list(itertools.islice(stream, 5))
    assert len(first) == 5
    assert pulled[0] <= 2 * (2 * 4 + 2)  # the window, not the (endless) listing
    stream.close()  # shuts the pool down


def test_a_stream_of_broken_files_still_flows(detector: Detector):
    pulled = [0]
    stream = score(counting(Found("x.jpg", "g", "broken symbolic link"), pulled), detector, 8, 1)
    assert [s.error for s in itertools.islice(stream, 3)] == ["broken symbolic link"] * 3
    assert pulled[0] < 100
    stream.close()


def _pillow_raising(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def explode(*args, **kwargs):
        raise exc

    monkeypatch.setattr("PIL.Image.open", explode)


@pytest.mark.parametrize(
    "exc",
    [
        OSError("image file is truncated"),
        SyntaxError("broken PNG file"),
        ValueError("tile cannot extend outside image"),
        IndexError("list index out of range"),
        EOFError(),
        struct.error("unpack requires a buffer of 4 bytes"),
        Image.DecompressionBombError("too many pixels"),
        UnidentifiedImageError("cannot identify image file"),
        DataError("not a readable image"),
    ],
)
def test_what_pillow_raises_on_a_file_becomes_an_error_row(
    tmp_path: Path, monkeypatch, exc: Exception
):
    path = write_image(tmp_path / "a.png", grey(0))
    _pillow_raising(monkeypatch, exc)
    decoded = decode(Found(str(path), "g"), PreprocessConfig(size=16))
    assert decoded.pixels is None and decoded.error


@pytest.mark.parametrize(
    "exc", [TypeError("x"), AttributeError("y"), KeyError("z"), IndexError(), ValueError()]
)
def test_a_bug_is_not_an_error_row_it_stops_the_scan(
    tmp_path: Path, monkeypatch, detector: Detector, exc: Exception
):
    paths = [write_image(tmp_path / f"{i}.png", grey(0)) for i in range(3)]

    def broken_prepare(*args, **kwargs):
        raise exc

    monkeypatch.setattr("dfscan.scanner.scan.core.decode_prepared", broken_prepare)
    with pytest.raises(type(exc)):
        decode(Found(str(paths[0]), "g"), PreprocessConfig(size=16))
    for workers in (0, 2):  # inline, and from the decoding pool's threads
        with pytest.raises(type(exc)):
            list(score([Found(str(p), "g") for p in paths], detector, workers=workers))


def test_a_truncated_jpeg_is_an_error_row(tmp_path: Path, detector: Detector):
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    whole = write_image(tmp_path / "whole.jpg", noise, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the scan data cut short
    scored = list(score([Found(str(whole), "g"), Found(str(cut), "g")], detector, workers=2))
    assert scored[0].error is None and scored[0].p_fake is not None
    assert scored[1].p_fake is None and "not a readable image" in scored[1].error


def test_nan_scores_become_error_rows(tmp_path: Path, detector: Detector, monkeypatch):
    path = write_image(tmp_path / "a.png", grey(0))
    monkeypatch.setattr(detector, "run", lambda images: np.full(len(images), np.nan))
    (scored,) = score([Found(str(path), "g")], detector, workers=0)
    assert scored.p_fake is None and "NaN" in scored.error


def test_the_ray_actors_decoding_gives_the_local_engines_pixels_and_errors(tmp_path: Path):
    """The actors read each file's bytes and decode those (:func:`read_and_decode`); the local
    engine decodes the path: the same pixels, and the same error words, naming the file."""
    root = tmp_path / "data"
    write_awkward_files(root)
    files = [*discover([root], DiscoveryStats()), Found(str(root / "gone.png"), "g")]
    cfg = PreprocessConfig(size=16)
    for found in files:
        local, actor = decode(found, cfg), read_and_decode(found, cfg, provenance=False)
        assert actor.error == local.error, found.path
        assert (actor.width, actor.height, actor.format, actor.animated) == (
            local.width, local.height, local.format, local.animated,
        ), found.path  # fmt: skip
        if local.pixels is None:
            assert actor.pixels is None, found.path
        else:
            assert actor.pixels is not None and np.array_equal(actor.pixels, local.pixels)
    errors = [decode(found, cfg).error or "" for found in files]
    assert sum("not a readable image" in e for e in errors) >= 4
    assert not any("BytesIO" in e for e in errors)


def test_a_failing_scorer_stops_the_local_scan_with_no_rows(
    tmp_path: Path, brightness_onnx: Path, monkeypatch: pytest.MonkeyPatch
):
    """A bug while scoring (here the model run raising RuntimeError) is no error row: the
    exception itself leaves run_scan, as from the Ray engine (test_scan_ray.py)."""
    for i in range(3):
        write_image(tmp_path / "data" / f"{i}.png", grey(i))
    detector = Detector.from_onnx(brightness_onnx, "cpu")

    def broken(images):
        raise RuntimeError("the scorer broke")

    monkeypatch.setattr(detector, "run", broken)
    out = tmp_path / "out.csv"
    with pytest.raises(RuntimeError, match="the scorer broke"):
        run_scan(ScanOptions([tmp_path / "data"], brightness_onnx, csv=out), detector=detector)
    assert read_rows(out) == []

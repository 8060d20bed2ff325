"""Discovery: recursive, deterministic, streaming, loop-proof, and silent about nothing."""

import os
from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.errors import DataError
from dfscan.scanner.scan import discovery
from dfscan.scanner.scan.discovery import (
    ROOT_GENERATOR,
    DiscoveryStats,
    check_roots,
    count_pending,
    iter_image_files,
    walk,
)
from dfscan.train.data.folder import iter_image_files as train_listing

from ..conftest import write_image

PIXELS = np.zeros((8, 8, 3), dtype=np.uint8)


def rel(root: Path, found) -> str:
    return Path(found.path).relative_to(root).as_posix()


def test_recursive_sorted_case_insensitive_with_generators(tmp_path: Path):
    for name in ("b/x/deep.PNG", "b/a.Jpg", "a/1.webp", "top.TIFF", "a/z.bmp", "c.gif"):
        write_image(tmp_path / name, PIXELS)
    (tmp_path / "a" / "readme.txt").write_text("no")
    stats = DiscoveryStats()
    found = list(walk(tmp_path, stats))
    assert [(rel(tmp_path, f), f.generator) for f in found] == [
        ("a/1.webp", "a"),
        ("a/z.bmp", "a"),
        ("b/a.Jpg", "b"),
        ("b/x/deep.PNG", "b"),  # the generator is the first-level folder
        ("c.gif", ROOT_GENERATOR),
        ("top.TIFF", ROOT_GENERATOR),
    ]
    assert all(f.problem is None for f in found)
    assert stats.ignored == 1
    assert [f.path for f in walk(tmp_path)] == [f.path for f in found]  # same every time


def test_symlink_loops_and_special_files_are_rows_not_hangs(tmp_path: Path):
    write_image(tmp_path / "real" / "a.png", PIXELS)
    (tmp_path / "real" / "loop").symlink_to(tmp_path)
    (tmp_path / "real" / "self.jpg").symlink_to(tmp_path / "real" / "self.jpg")
    (tmp_path / "real" / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "real" / "self").symlink_to(tmp_path / "real" / "self")  # no extension
    os.mkfifo(tmp_path / "real" / "pipe.jpeg")
    stats = DiscoveryStats()
    problems = {rel(tmp_path, f): f.problem for f in walk(tmp_path, stats)}
    assert problems == {
        "real/a.png": None,
        "real/gone.png": "broken symbolic link",
        "real/pipe.jpeg": "not a regular file",
        "real/self.jpg": "cannot follow: Too many levels of symbolic links",
    }
    assert stats.ignored == 1  # the extension-less looping link


def test_a_folder_named_like_an_image_is_walked(tmp_path: Path):
    write_image(tmp_path / "gan" / "x.png" / "inner.png", PIXELS)
    assert [rel(tmp_path, f) for f in walk(tmp_path)] == ["gan/x.png/inner.png"]


def test_a_file_given_as_root_is_scanned_whatever_its_name(tmp_path: Path):
    path = tmp_path / "photo.dat"
    path.write_bytes(b"x")
    assert [(f.path, f.generator) for f in walk(path)] == [(str(path), ROOT_GENERATOR)]


def test_paths_keep_the_root_as_given(tmp_path: Path, monkeypatch):
    write_image(tmp_path / "data" / "gan" / "a.png", PIXELS)
    monkeypatch.chdir(tmp_path)
    assert [f.path for f in walk("data/")] == [os.path.join("data", "gan", "a.png")]


def test_streams_without_listing_the_whole_tree_first(tmp_path: Path, monkeypatch):
    for i in range(30):
        write_image(tmp_path / f"gen{i:02d}" / "a.png", PIXELS)
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path):
        listed.append(path)
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", spy)
    first = next(walk(tmp_path))
    assert first.generator == "gen00"
    assert len(listed) == 2  # the root and the first folder, not the 30 others


def test_unlistable_folder_is_recorded(tmp_path: Path, monkeypatch):
    write_image(tmp_path / "gan" / "a.png", PIXELS)
    locked = tmp_path / "locked"
    write_image(locked / "b.png", PIXELS)
    real_scandir = os.scandir

    def scandir(path):  # chmod 0 would not stop root, who runs these tests in CI
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    stats = DiscoveryStats()
    assert [rel(tmp_path, f) for f in walk(tmp_path, stats)] == ["gan/a.png"]
    assert stats.unlisted == [(str(locked), "Permission denied")]


def test_count_pending_skips_done_files(tmp_path: Path):
    for name in ("a/1.png", "a/2.png", "b/3.png"):
        write_image(tmp_path / name, PIXELS)
    paths = [f.path for f in walk(tmp_path)]
    assert count_pending([tmp_path]) == 3
    assert count_pending([tmp_path], done={paths[0]}) == 2


def test_training_listing_moved_here_and_still_relative_to_its_root(tmp_path: Path):
    write_image(tmp_path / "data" / "real" / "a.png", PIXELS)
    (tmp_path / "data" / "real" / "dangling.png").symlink_to(tmp_path / "nope.png")
    root = tmp_path / "other" / ".." / "data"  # not normalised: relative_to must still work
    (tmp_path / "other").mkdir()
    assert train_listing is iter_image_files
    files = list(iter_image_files(root))
    assert [p.relative_to(root).as_posix() for p in files] == ["real/a.png"]


@pytest.mark.parametrize("second", ["data", "data/real", "data/../data/"])
def test_overlapping_folders_are_refused(tmp_path: Path, second: str):
    write_image(tmp_path / "data" / "real" / "a.png", PIXELS)
    with pytest.raises(DataError, match="already scanned as part of"):
        check_roots([tmp_path / "data", tmp_path / second])
    siblings = [tmp_path / "data" / "real", tmp_path / "data" / "realer"]  # a prefix, not inside
    siblings[1].mkdir()
    assert check_roots(siblings) == siblings


def test_one_file_reached_twice_is_scanned_once(tmp_path: Path):
    write_image(tmp_path / "a" / "real" / "x.png", PIXELS)
    write_image(tmp_path / "a" / "real" / "y.png", PIXELS)
    (tmp_path / "a" / "sdxl").mkdir()
    (tmp_path / "a" / "sdxl" / "link.png").symlink_to(tmp_path / "a" / "real" / "x.png")
    os.link(tmp_path / "a" / "real" / "y.png", tmp_path / "a" / "sdxl" / "hard.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "same").symlink_to(tmp_path / "a" / "real")  # a second root, same files
    write_image(tmp_path / "b" / "own.png", PIXELS)
    roots = check_roots([tmp_path / "a", tmp_path / "b"])
    stats = DiscoveryStats()
    found = [rel(tmp_path, f) for f in discovery.discover(roots, stats)]
    assert found == ["a/real/x.png", "a/real/y.png", "b/own.png"]
    assert stats.duplicates == 4  # the symbolic link, the hard link, b/same/x.png, b/same/y.png
    assert count_pending(roots) == 3


def test_generators_follow_the_label_convention(tmp_path: Path):
    for name in ("progan/car/0_real/a.png", "progan/car/1_fake/b.png", "1_fake/c.png"):
        write_image(tmp_path / name, PIXELS)
    assert [(rel(tmp_path, f), f.generator) for f in walk(tmp_path)] == [
        ("1_fake/c.png", "fake"),
        ("progan/car/0_real/a.png", "real"),
        ("progan/car/1_fake/b.png", "progan"),
    ]

import os
from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.errors import DataError
from dfscan.scanner.scan.discovery import iter_image_files
from dfscan.train.data.folder import scan_dataset

from ..conftest import write_image

PIXELS = np.zeros((8, 8, 3), np.uint8)


def test_real_and_generator_folders(tmp_path: Path):
    for rel in ("real/a.png", "real/sub/b.JPG", "sdxl/c.png", "flux/deep/d.webp", "fake/e.png"):
        write_image(tmp_path / rel, PIXELS, format="PNG")
    (tmp_path / "real" / "notes.txt").write_text("ignored: not an image extension")
    scan = scan_dataset(tmp_path)
    by_path = {s.path: (s.label, s.generator) for s in scan.samples}
    assert by_path == {
        "real/a.png": (0, "real"),
        "real/sub/b.JPG": (0, "real"),
        "sdxl/c.png": (1, "sdxl"),
        "flux/deep/d.webp": (1, "flux"),
        "fake/e.png": (1, "fake"),
    }
    assert scan.counts() == {"fake": 1, "flux": 1, "real": 2, "sdxl": 1}


def test_cnndetection_layout(tmp_path: Path):
    for rel in (
        "progan/car/0_real/a.png",
        "progan/car/1_fake/b.png",
        "0_real/c.png",
        "1_fake/d.png",
    ):
        write_image(tmp_path / rel, PIXELS)
    by_path = {s.path: (s.label, s.generator) for s in scan_dataset(tmp_path).samples}
    assert by_path == {
        "progan/car/0_real/a.png": (0, "real"),
        "progan/car/1_fake/b.png": (1, "progan"),
        "0_real/c.png": (0, "real"),
        "1_fake/d.png": (1, "fake"),
    }


def test_groups_follow_the_double_underscore(tmp_path: Path):
    for rel in ("real/cat__1.png", "real/cat__2.png", "gan/cat__3.png", "gan/dog.png"):
        write_image(tmp_path / rel, PIXELS)
    groups = {s.path: s.group for s in scan_dataset(tmp_path).samples}
    assert groups["real/cat__1.png"] == groups["gan/cat__3.png"] == "cat"
    assert groups["gan/dog.png"] == "gan/dog"


def test_unreadable_files_are_listed_not_fatal(tmp_path: Path):
    write_image(tmp_path / "real/ok.png", PIXELS)
    write_image(tmp_path / "gan/ok.png", PIXELS)
    (tmp_path / "real/empty.jpg").write_bytes(b"")
    (tmp_path / "gan/text.png").write_text("hello")
    scan = scan_dataset(tmp_path)
    assert len(scan.samples) == 2
    assert sorted(p for p, _ in scan.unreadable) == ["gan/text.png", "real/empty.jpg"]


@pytest.mark.parametrize(
    "layout,message",
    [((), "not found"), (("gan/a.png",), "no real images"), (("real/a.png",), "no fake images")],
)
def test_missing_pieces_are_clear_errors(tmp_path: Path, layout, message):
    root = tmp_path / "data"
    for rel in layout:
        write_image(root / rel, PIXELS)
    with pytest.raises(DataError, match=message):
        scan_dataset(root)


def test_symlink_loop_does_not_hang(tmp_path: Path):
    write_image(tmp_path / "real/a.png", PIXELS)
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")
    assert [p.name for p in iter_image_files(tmp_path)] == ["a.png"]


def test_a_file_reached_twice_is_one_sample(tmp_path: Path):
    from dfscan.train.data.split import make_split

    write_image(tmp_path / "real/a.png", PIXELS)
    write_image(tmp_path / "real/b.png", PIXELS)
    write_image(tmp_path / "gan/c.png", PIXELS)
    (tmp_path / "aaa").mkdir()  # listed first, but a link: the real/ path is kept
    (tmp_path / "aaa" / "a.png").symlink_to(tmp_path / "real" / "a.png")
    (tmp_path / "gan" / "linked").symlink_to(tmp_path / "real")  # a folder link
    os.link(tmp_path / "gan" / "c.png", tmp_path / "gan" / "c2.png")  # a hard link
    scan = scan_dataset(tmp_path)
    assert [(s.path, s.label) for s in scan.samples] == [
        ("gan/c.png", 1),
        ("real/a.png", 0),
        ("real/b.png", 0),
    ]
    assert scan.duplicates == [
        ("aaa/a.png", "real/a.png"),
        ("gan/c2.png", "gan/c.png"),
        ("gan/linked/a.png", "real/a.png"),
        ("gan/linked/b.png", "real/b.png"),
    ]
    assignment = make_split(scan.samples, seed=0)
    resolved = {}
    for s in scan.samples:  # each file is in one split
        resolved.setdefault((tmp_path / s.path).resolve(), set()).add(assignment[s.path])
    assert all(len(splits) == 1 for splits in resolved.values())


def test_a_real_sub_folder_names_its_source(tmp_path: Path):
    for rel in ("real/canon/a.png", "real/canon/trip/b.png", "real/c.png", "gan/x/d.png"):
        write_image(tmp_path / rel, PIXELS)
    write_image(tmp_path / "real/site/1_fake/e.png", PIXELS)
    sources = {s.path: s.source for s in scan_dataset(tmp_path).samples}
    assert sources == {
        "real/canon/a.png": "canon",
        "real/canon/trip/b.png": "canon",
        "real/c.png": "",  # directly in real/: unknown
        "gan/x/d.png": "",  # fakes have none
        "real/site/1_fake/e.png": "",
    }

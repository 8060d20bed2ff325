"""The real/fake convention is defined once (dfscan.scanner.labels), for training and scans."""

import ast
from pathlib import Path

import numpy as np

from dfscan import scanner
from dfscan.scanner import labels
from dfscan.scanner.scan.discovery import ROOT_GENERATOR, walk
from dfscan.scanner.scan.reports import Row
from dfscan.scanner.scan.tallies import Tallies
from dfscan.train.data.folder import scan_dataset

from ..conftest import write_image

PIXELS = np.zeros((8, 8, 3), np.uint8)
CNNDETECTION = (
    "progan/car/0_real/a.png",
    "progan/car/1_fake/b.png",
    "progan/cat/0_real/c.png",
    "0_real/d.png",
    "1_fake/e.png",
    "real/f.png",
    "sdxl/g.png",
    "top.png",
)


def test_the_convention():
    assert labels.CLASSES == ("real", "fake") and labels.CLASSES[labels.REAL_LABEL] == labels.REAL
    assert labels.label_of(()) is None
    assert labels.label_of(("progan", "car", "0_real")) == (0, "real")
    assert labels.label_of(("progan", "car", "1_fake")) == (1, "progan")
    assert labels.label_of(("1_fake",)) == (1, "fake")
    assert labels.label_of(("real", "1_fake")) == (1, "fake")  # "real" names real files only
    assert labels.label_of(("real", "x")) == (0, "real")
    assert labels.label_of(("sdxl",)) == (1, "sdxl")


def test_scan_generators_and_training_labels_agree(tmp_path: Path):
    for rel in CNNDETECTION:
        write_image(tmp_path / rel, PIXELS)
    scanned = {Path(f.path).relative_to(tmp_path).as_posix(): f.generator for f in walk(tmp_path)}
    trained = {s.path: s.generator for s in scan_dataset(tmp_path).samples}
    assert scanned == trained | {"top.png": ROOT_GENERATOR}
    assert scanned["progan/car/0_real/a.png"] == "real"


def test_tallies_count_0_real_as_real(tmp_path: Path):
    for rel in CNNDETECTION:
        write_image(tmp_path / rel, PIXELS)
    tallies = Tallies()
    for f in walk(tmp_path):  # a model that calls everything fake
        tallies.add(Row(f.path, f.generator, 0.9, "fake", 0.5, "0" * 64, 8, 8, "PNG", None))
    assert tallies.labelled
    assert tallies.by_generator["real"].images == 4  # 0_real ×3 and real/
    assert tallies.false_positive_rate() == 1.0
    assert tallies.accuracy("progan") == 1.0  # only its 1_fake file is under progan
    assert tallies.overall_accuracy() == 3 / 7  # top.png has no label


def test_real_is_declared_once():
    """No module but scanner/labels.py binds a name to the class names "real" / "fake"."""
    import dfscan.export
    import dfscan.train

    offenders = []
    for package in (scanner, dfscan.train, dfscan.export):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            if path.name == "labels.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                value = getattr(node, "value", None)
                if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
                    value, ast.Constant | ast.Tuple
                ):
                    names = {n.value for n in ast.walk(value) if isinstance(n, ast.Constant)}
                    if names & {"real", "fake"}:
                        offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []

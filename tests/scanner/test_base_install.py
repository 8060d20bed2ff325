"""The base install (``pip install dfscan``, no extras) scans with models made by the full one.

``.ci/run`` runs this file, with other scanner tests, in a second venv made by ``pip install .``
alone: ``DFSCAN_BASE_MODELS`` names the folder that ``python -m tests.base_install DIR`` filled
with the full install, and ``DFSCAN_BASE_INSTALL=1`` says the venv must lack torch and onnx.
In the main run (neither set) the same tests run on models built here, so the scan path's
imports are checked where torch and onnx *are* installed, too.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfscan.scanner.model.detector import Detector

BASE_INSTALL = os.environ.get("DFSCAN_BASE_INSTALL") == "1"
HEAVY = ("torch", "torchvision", "onnx", "onnxscript", "sklearn", "matplotlib")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    given = os.environ.get("DFSCAN_BASE_MODELS")
    if given:
        found = {name: Path(given) / name for name in ("brightness.onnx", "exported.onnx")}
        missing = [str(p) for p in found.values() if not p.is_file()]
        assert not missing, f"DFSCAN_BASE_MODELS lacks {missing}"
        return found
    assert not BASE_INSTALL, "the base-install run needs DFSCAN_BASE_MODELS"
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from ..base_install import write_models

    return write_models(tmp_path_factory.mktemp("base-models"))


def labelled(root: Path) -> Path:
    """real/: 3 black images; sdxl/: 3 white ones (the brightness model's exact answers)."""
    for folder, value in (("real", 0), ("sdxl", 255)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((40, 48, 3), value, np.uint8)).save(root / folder / f"{i}.png")
    return root


def test_this_venv_is_the_base_install():
    if not BASE_INSTALL:
        pytest.skip("only in the base-install venv (DFSCAN_BASE_INSTALL=1, see .ci/run)")
    present = [name for name in HEAVY if importlib.util.find_spec(name) is not None]
    assert present == [], f"the base install pulled in {present}"
    assert importlib.util.find_spec("onnxruntime") is not None
    import dfscan.scanner

    installed = Path(dfscan.scanner.__file__).resolve()
    assert installed.is_relative_to(Path(sys.prefix).resolve()), f"not the wheel: {installed}"


SCAN = """
import json, sys
from dfscan.scanner.cli.app import main
sys.argv = ["dfscan", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("name", ["brightness.onnx", "exported.onnx"])
def test_the_scan_path_imports_neither_torch_nor_onnx(models, name: str, tmp_path: Path):
    data, report = labelled(tmp_path / "data"), tmp_path / "r.csv"
    summary = tmp_path / "summary.json"
    script = SCAN.replace("HEAVY", repr(json.dumps(HEAVY)))
    args = ["scan", str(data), "-m", str(models[name]), "--csv", str(report), "--device", "cpu"]
    args += ["--summary-json", str(summary)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 0, "heavy": []}, done.stderr
    with report.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["error"] == "" for r in rows)
    totals = json.loads(summary.read_text())
    assert totals["labelled"] and totals["total"]["images"] == 6
    if name == "brightness.onnx":  # known answers: black real, white fake
        assert {(r["generator"], r["verdict"]) for r in rows} == {
            ("real", "real"),
            ("sdxl", "fake"),
        }
        assert totals["false_positive_rate"] == 0.0 and totals["total"]["accuracy"] == 1.0


def test_exported_model_reads_its_metadata_and_scores(models):
    detector = Detector.from_onnx(models["exported.onnx"], device="cpu")
    assert detector.meta.arch == "efficientnet_lite0" and detector.meta.size == 32
    assert detector.threshold == pytest.approx(0.5)
    images = [np.full((40, 40, 3), v, np.uint8) for v in (0, 128, 255)]
    p = detector.predict(images)
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert np.allclose(detector.predict(images[::-1]), p[::-1], atol=1e-6)  # per image

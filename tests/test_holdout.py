"""Leave-groups-out protocol: fold planning, per-fold runs on demo data, metrics and resumption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from dfscan.scanner.cli import app
from dfscan.scanner.errors import DataError
from dfscan.train.dataset_folder import Sample, scan_dataset
from dfscan.train.experiments import QUICK_OVERRIDES
from dfscan.train.holdout import plan_folds
from dfscan.train.robustness import (
    bootstrap_indices,
    jpeg,
    mean_interval,
    rescale,
    scores_with_ci,
    tpr_at_fpr,
)
from dfscan.train.split import read_split

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _samples(spec: dict[str, int], groups_per_real: int = 1) -> list[Sample]:
    out = []
    for gen, n in spec.items():
        for i in range(n):
            label = 0 if gen == "real" else 1
            group = f"{gen}-{i // groups_per_real}" if label == 0 else f"{gen}-{i}"
            out.append(Sample(f"{gen}/{i}.png", label, gen, group))
    return out


def test_generators_go_whole_to_folds_and_groups_never_straddle():
    samples = _samples({"real": 40, "a": 9, "b": 6, "c": 5, "d": 4}, groups_per_real=4)
    plan = plan_folds(samples, "generators", n_folds=2, seed=3)
    assert plan.names == ["0", "1"]
    for gen in "abcd":
        assert len({plan.fold[s.path] for s in samples if s.generator == gen}) == 1
    for group in {s.group for s in samples}:
        assert len({plan.fold[s.path] for s in samples if s.group == group}) == 1
    # largest first to the lightest fold: a (9) alone, then b+c+d... balanced 9 vs 15 → a, b|c…
    fakes = {f: sum(1 for s in samples if s.label and plan.fold[s.path] == f) for f in plan.names}
    assert abs(fakes["0"] - fakes["1"]) <= 4
    # the split of a fold: its images are test; train/val come from the other fold only
    split = plan.assignment("1")
    assert {split[s.path] for s in samples if plan.fold[s.path] == "1"} == {"test"}
    rest = {split[s.path] for s in samples if plan.fold[s.path] == "0"}
    assert rest == {"train", "val"}


def test_folds_file_gives_folds_families_and_groups(tmp_path: Path):
    data = tmp_path / "data"
    samples = _samples({"real": 12, "x1": 3, "x2": 3, "y1": 4})
    rows = []
    for i, s in enumerate(samples):
        family = "real" if s.label == 0 else s.generator[0]
        fold = {"x": "0", "y": "1"}.get(family, str(i % 2))
        rows.append({"path": f"data/{s.path}", "fold": fold, "family": family, "group": f"g{i}"})
        (data / s.path).parent.mkdir(parents=True, exist_ok=True)
        (data / s.path).write_bytes(b"")
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["path", "fold", "family", "group"])
        writer.writeheader()
        writer.writerows(rows)
    plan = plan_folds(samples, "families", manifest, data)
    assert {plan.family[s.path] for s in samples if s.label} == {"x", "y"}
    assert all(plan.fold[s.path] == "0" for s in samples if s.generator.startswith("x"))
    assert {s.group for s in plan.samples} == {f"g{i}" for i in range(len(samples))}
    with pytest.raises(DataError, match="not in"):
        plan_folds([*samples, Sample("x1/new.png", 1, "x1", "n")], "families", manifest, data)
    with pytest.raises(DataError, match="needs --folds"):
        plan_folds(samples, "families")
    with pytest.raises(DataError, match="cannot fill"):
        plan_folds(samples, "generators", n_folds=4)


def test_metrics_and_intervals():
    rng = np.random.default_rng(0)
    y = np.array([0] * 40 + [1] * 20)
    p = np.concatenate([rng.normal(0, 1, 40), rng.normal(1.5, 1, 20)])
    groups = [f"g{i // 2}" for i in range(60)]
    draws = bootstrap_indices(y, groups, rng, 200)
    assert all(len(d) == 60 for d in draws)  # groups of 2: the same size every time
    point, boot = scores_with_ci(y, p, draws)
    lo, hi = point["auc_ci"]
    assert 0.5 < lo < point["auc"] < hi <= 1.0
    # detection at 5 % FPR: every fake above the real scores → 1.0; none → 0.0
    assert tpr_at_fpr(y, np.r_[np.zeros(40), np.ones(20)]) == 1.0
    assert tpr_at_fpr(y, np.r_[np.ones(40), np.zeros(20)]) == 0.0
    ties = np.round(p, 1)  # ties handled as sklearn does
    for scores_of in (p, ties):
        fast = scores_with_ci(y, scores_of, [])[0]
        assert fast["auc"] == pytest.approx(roc_auc_score(y, scores_of))
        assert fast["ap"] == pytest.approx(average_precision_score(y, scores_of))
    lo2, hi2 = mean_interval([boot["auc"], boot["auc"]])
    assert lo2 == pytest.approx(lo) and hi2 == pytest.approx(hi)
    img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    assert rescale(img, 0.5).size == (25, 20)
    assert np.abs(np.asarray(jpeg(img, 75), float) - np.asarray(img, float)).mean() > 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from dfscan.train.demo_data import build_demo_dataset

    return build_demo_dataset(tmp_path_factory.mktemp("ho") / "data", n_real=24, size=48).root


# one tiny run: the protocol is under test, not the detector
ONE_RUN = {"base": {"arch": "efficientnet_lite0", "weights": "none", **QUICK_OVERRIDES}}


def test_holdout_cli_runs_every_fold_and_resumes(demo: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "ho"
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(ONE_RUN))
    args = ["experiments", str(demo), "--out", str(out), "--holdout", "generators"]
    args += ["--grid", str(grid), "--n-folds", "2", "--workers", "0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["fold"] for r in rows] == ["0", "1", "mean"]
    for r in rows:
        assert r["status"] == "done", r
        for key in ("auc", "auc_jpeg75", "auc_half", "tpr5", "fpr_at_threshold"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["auc_lo"]) <= float(r["auc"]) <= float(r["auc_hi"])
    # each fold's test generators were never in its training split
    families = json.loads((out / "folds" / "families.json").read_text())
    for fold_file in sorted((out / "folds").glob("*.csv")):
        samples, split = read_split(fold_file)
        test_gens = {s.generator for s in samples if split[s.path] == "test" and s.label}
        train_gens = {s.generator for s in samples if split[s.path] != "test" and s.label}
        assert test_gens and not test_gens & train_gens
        held = json.loads(next(out.glob(f"runs/*/fold-{fold_file.stem}/holdout.json")).read_text())
        assert set(held["families"]) == test_gens
        assert {families[s.path] for s in samples if split[s.path] == "test" and s.label} == set(
            held["families"]
        )
    mean = rows[2]
    assert float(mean["auc"]) == pytest.approx((float(rows[0]["auc"]) + float(rows[1]["auc"])) / 2)
    html = (out / "report.html").read_text()
    assert "Held-out generators" in html and "data:image/png;base64," in html
    assert "| fold |" in (out / "results.md").read_text() or "fold" in result.output

    # a second run trains nothing: every fold is done
    import dfscan.train.loop as loop

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(loop, "train", no_training)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output


def test_holdout_all_folds_failed_exits_nonzero(demo: Path, tmp_path: Path, monkeypatch):
    import dfscan.train.loop as loop

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "train", broken)
    args = ["experiments", str(demo), "--out", str(tmp_path / "x"), "--holdout", "generators"]
    result = runner.invoke(app, [*args, "--n-folds", "2", "--quick", "--workers", "0"])
    assert result.exit_code == 1
    rows = list(csv.DictReader((tmp_path / "x" / "results.csv").open()))
    assert rows and all(r["status"] == "failed" or r["fold"] == "mean" for r in rows)
    assert "boom" in rows[0]["error"]


def test_folds_match_scan(demo: Path):
    samples = scan_dataset(demo).samples
    plan = plan_folds(samples, "generators", n_folds=2)
    assert sorted(plan.fold) == sorted(s.path for s in samples)

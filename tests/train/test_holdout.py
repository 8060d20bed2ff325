"""Leave-groups-out protocol: fold planning, per-fold runs on demo data, metrics and resumption."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import DataError
from dfscan.train.data.folder import Sample, scan_dataset
from dfscan.train.data.split import read_split
from dfscan.train.experiments._builtin_grids import QUICK_OVERRIDES
from dfscan.train.fit.robustness import (
    bootstrap_indices,
    jpeg,
    mean_interval,
    rescale,
    scores_with_ci,
    tpr_at_fpr,
)
from dfscan.train.holdout.run import _mean_row, false_positives
from dfscan.train.holdout.split import plan_folds

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
    rows = [
        {"path": f"data/{s.path}", "fold": fold, "family": family, "group": f"g{i}"}
        for i, (s, family, fold) in enumerate(_files_by_family(data, samples))
    ]
    manifest = write_csv(tmp_path / "manifest.csv", rows)
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


def _files_by_family(data: Path, samples: list[Sample]) -> list[tuple[Sample, str, str]]:
    """An empty file under ``data`` for each sample, with the family and fold a folds file
    gives it: a fake's family is its generator's first letter (x → fold 0, y → fold 1); reals
    alternate between the folds, spread by photo."""
    out = []
    for i, s in enumerate(samples):
        family = "real" if s.label == 0 else s.generator[0]
        out.append((s, family, {"x": "0", "y": "1"}.get(family, str(i % 2))))
        (data / s.path).parent.mkdir(parents=True, exist_ok=True)
        (data / s.path).write_bytes(b"")
    return out


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """A folds file: its columns are the first row's keys."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sourced(spec: dict[str, int], sources: dict[str, int]) -> list[Sample]:
    """Fakes as in ``_samples``; reals from named sources, 2 crops (one group) per photo."""
    out = [s for s in _samples(spec) if s.label]
    for src, n in sources.items():
        out += [Sample(f"real/{src}/{i}.png", 0, "real", f"{src}-{i // 2}", src) for i in range(n)]
    return out


SOURCES = {"cam": 20, "site": 14, "pkg": 10, "phone": 8, "scan": 4, "misc": 2}


def test_reals_go_to_folds_by_whole_source_largest_first():
    samples = _sourced({"a": 9, "b": 6, "c": 5, "d": 4}, SOURCES)
    plan = plan_folds(samples, "generators", n_folds=2, seed=3)
    assert plan.reals == "sources"
    for src in SOURCES:  # no source straddles folds
        assert len({plan.fold[s.path] for s in samples if s.source == src}) == 1
    # largest first to the fold with fewer reals: cam→0, site→1, pkg→1, phone→0, scan→1, misc→0
    fold_of = {src: plan.fold[f"real/{src}/0.png"] for src in SOURCES}
    assert fold_of == {"cam": "0", "site": "1", "pkg": "1", "phone": "0", "scan": "1", "misc": "0"}
    rows = {r["fold"]: r for r in plan.summary()}
    assert (rows["0"]["real"], rows["1"]["real"]) == (30, 28)
    assert rows["1"]["sources"] == {"pkg": 10, "scan": 4, "site": 14}
    # fakes are placed as without sources
    by_groups = plan_folds(samples, "generators", n_folds=2, seed=3, reals="groups")
    assert all(plan.fold[s.path] == by_groups.fold[s.path] for s in samples if s.label)
    # the old behaviour on request: groups spread, so sources straddle folds
    assert by_groups.reals == "groups"
    spread = {src: {by_groups.fold[s.path] for s in samples if s.source == src} for src in SOURCES}
    assert any(len(folds) == 2 for folds in spread.values())
    # a fold's split: its reals are test, and none of their sources is in train or val
    split = plan.assignment("1")
    trained = {s.source for s in samples if s.label == 0 and split[s.path] != "test"}
    tested = {s.source for s in samples if s.label == 0 and split[s.path] == "test"}
    assert tested == {"pkg", "scan", "site"} and not tested & trained


def test_sources_need_every_real_and_enough_of_them():
    samples = _sourced({"a": 9, "b": 6}, {"cam": 6, "site": 4})
    unsourced = [*samples, Sample("real/x.png", 0, "real", "x")]
    with pytest.raises(DataError, match="1 of 11 real images have no source"):
        plan_folds(unsourced, "generators", n_folds=2)
    with pytest.raises(DataError, match="2 real sources cannot fill 3 folds"):
        plan_folds(_sourced({"a": 9, "b": 6, "c": 5}, {"cam": 6, "site": 4}), "generators")
    # no source at all: groups, as before
    plain = _samples({"real": 12, "a": 9, "b": 6})
    assert plan_folds(plain, "generators", n_folds=2).reals == "groups"
    with pytest.raises(DataError, match="--holdout-reals"):
        plan_folds(plain, "generators", n_folds=2, reals="photos")


def test_a_source_follows_fakes_made_from_its_photos():
    samples = _sourced({"a": 9, "b": 6}, {"cam": 6, "site": 4, "pkg": 4})
    # a fake of generator b made from the first photo of "pkg" (the same group)
    samples.append(Sample("b/from-pkg.png", 1, "b", "pkg-0"))
    plan = plan_folds(samples, "generators", n_folds=2)
    assert plan.fold["real/pkg/0.png"] == plan.fold["b/0.png"]
    # photos of one source feeding fakes in two folds: it cannot be held out whole
    samples.append(Sample("a/from-pkg.png", 1, "a", "pkg-1"))
    with pytest.raises(DataError, match="'pkg' holds photos of fakes in folds"):
        plan_folds(samples, "generators", n_folds=2)


def test_folds_file_origin_package_places_reals_and_fold_places_fakes(tmp_path: Path):
    data = tmp_path / "data"
    samples = _samples({"real": 12, "x1": 3, "y1": 4})
    rows = [
        {
            "path": s.path,
            "fold": fold,
            "family": family,
            "origin_package": f"deb:pkg{i % 3}" if s.label == 0 else "pypi:templates",
        }
        for i, (s, family, fold) in enumerate(_files_by_family(data, samples))
    ]
    manifest = write_csv(data / "manifest.csv", rows)
    plan = plan_folds(samples, "families", manifest, data)
    assert {s.source for s in plan.samples if s.label == 0} == {"deb:pkg0", "deb:pkg1", "deb:pkg2"}
    assert {s.source for s in plan.samples if s.label == 1} == {""}  # fakes have no source
    assert all(plan.fold[s.path] == "0" for s in samples if s.generator == "x1")
    assert all(plan.fold[s.path] == "1" for s in samples if s.generator == "y1")
    for pkg in range(3):
        assert len({plan.fold[s.path] for s in plan.samples if s.source == f"deb:pkg{pkg}"}) == 1
    as_file = plan_folds(samples, "families", manifest, data, reals="groups")
    assert all(as_file.fold[r["path"]] == r["fold"] for r in rows)


def test_fpr_at_threshold_has_an_exact_interval_and_the_mean_pools_reals():
    got = false_positives(np.array([0.1, 0.2, 0.7, 0.9, 0.3]), 0.5)
    assert got["fpr_at_threshold"] == 0.4 and got["flagged_real"] == 2
    lo, hi = got["fpr_at_threshold_ci"]
    assert 0.05 < lo < 0.4 < hi < 0.86
    none = false_positives(np.zeros(60), 0.5)
    assert none["fpr_at_threshold"] == 0.0 and none["fpr_at_threshold_ci"][0] == 0.0
    assert none["fpr_at_threshold_ci"][1] == pytest.approx(1 - 0.025 ** (1 / 60))

    def fold(n_real: int, flagged: int) -> dict:
        fp = false_positives(np.r_[np.ones(flagged), np.zeros(n_real - flagged)], 0.5)
        return {"status": "done", "n_real": n_real, "n_fake": 5, "resamples": {}, **fp}

    mean = _mean_row(_SPEC, [fold(10, 0), fold(30, 6)])
    assert mean["fpr_at_threshold"] == pytest.approx(6 / 40)  # pooled, not (0 + 0.2) / 2
    assert mean["fpr_lo"] < 0.15 < mean["fpr_hi"]


class _Spec:
    folder = "run"


_SPEC = _Spec()


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
    from dfscan.train.data.demo import build_demo_dataset

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
    md = (out / "results.md").read_text()
    assert "| fold |" in md and "| mean |" in md

    # a second run trains nothing: every fold is done
    import dfscan.train.fit.loop as loop

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(loop, "train", no_training)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output


def test_holdout_cli_holds_out_real_sources(demo: Path, tmp_path: Path):
    # the demo's reals are tiles of named photos: the photo stands for the source here, and
    # every image is its own group (so no real source is tied to a fake's fold)
    rows = [
        {
            "path": s.path,
            "family": s.generator,
            "group": s.path,
            "source": s.path.split("/")[-1].split("-t")[0] if s.label == 0 else "",
        }
        for s in scan_dataset(demo).samples
    ]
    manifest = write_csv(tmp_path / "folds.csv", rows)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(ONE_RUN))
    out = tmp_path / "ho"
    args = ["experiments", str(demo), "--out", str(out), "--holdout", "generators"]
    args += ["--folds", str(manifest), "--grid", str(grid), "--n-folds", "2"]
    result = runner.invoke(app, [*args, "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "folds" / "plan.json").read_text())["placed"] == "sources"
    for fold_file in sorted((out / "folds").glob("*.csv")):
        samples, split = read_split(fold_file)  # the split file carries each real's source
        tested = {s.source for s in samples if s.label == 0 and split[s.path] == "test"}
        trained = {s.source for s in samples if s.label == 0 and split[s.path] != "test"}
        assert tested and trained and not tested & trained
        held = json.loads(next(out.glob(f"runs/*/fold-{fold_file.stem}/holdout.json")).read_text())
        assert held["real_sources"] == sorted(tested)
    rows = list(csv.DictReader((out / "results.csv").open()))
    for r in rows:
        assert float(r["fpr_lo"]) <= float(r["fpr_at_threshold"]) <= float(r["fpr_hi"])
    assert int(rows[2]["flagged_real"]) == int(rows[0]["flagged_real"]) + int(
        rows[1]["flagged_real"]
    )
    md = (out / "results.md").read_text()
    assert "FPR @ threshold [95 % CI]" in md and "Real sources held out" in md
    lines = md.splitlines()
    column = lines[0].split(" | ").index("FPR @ threshold [95 % CI]")
    mean = next(line for line in lines if "| mean |" in line).split(" | ")[column]
    shown = re.fullmatch(r"(\d+\.\d)% \[(\d+\.\d)–(\d+\.\d) %\]", mean)  # all in percent
    assert shown is not None, mean
    # results.csv rounds to 4 decimals and the table shows 1 of the percent: within a rounding
    saved = [100 * float(rows[2][k]) for k in ("fpr_at_threshold", "fpr_lo", "fpr_hi")]
    assert [float(x) for x in shown.groups()] == pytest.approx(saved, abs=0.06)
    # the folds were planned by source: asking for groups on them is refused, not mixed
    again = runner.invoke(app, [*args, "--holdout-reals", "groups", "--workers", "0"])
    assert again.exit_code != 0 and "planned with --holdout-reals sources" in again.output


def test_holdout_all_folds_failed_exits_nonzero(demo: Path, tmp_path: Path, monkeypatch):
    import dfscan.train.fit.loop as loop

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "train", broken)
    args = ["experiments", str(demo), "--out", str(tmp_path / "x"), "--holdout", "generators"]
    result = runner.invoke(app, [*args, "--n-folds", "2", "--quick", "--workers", "0"])
    assert result.exit_code == 1
    rows = list(csv.DictReader((tmp_path / "x" / "results.csv").open()))
    folds = [r for r in rows if r["fold"] != "mean"]
    assert len({r["fold"] for r in folds}) == 2 and {r["status"] for r in folds} == {"failed"}
    assert "boom" in rows[0]["error"]


def test_folds_match_scan(demo: Path):
    samples = scan_dataset(demo).samples
    plan = plan_folds(samples, "generators", n_folds=2)
    assert sorted(plan.fold) == sorted(s.path for s in samples)

"""``dfscan experiments``: grids, tiny runs on demo data, the report, resumption, failures."""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import DataError
from dfscan.train.experiments import run as experiments
from dfscan.train.experiments._builtin_grids import BUILTIN_GRIDS
from dfscan.train.experiments.grid import grid_toml, load_grid, parse_grid
from dfscan.train.experiments.run import run_experiments

from ..conftest import one_torch_thread

runner = CliRunner()
needs_toml = pytest.mark.skipif(sys.version_info < (3, 11), reason="TOML grids need tomllib")
QUIET = Console(stderr=True, quiet=True)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from dfscan.train.data.demo import build_demo_dataset

    return build_demo_dataset(tmp_path_factory.mktemp("exp") / "data", n_real=32, size=48).root


@pytest.fixture(scope="module")
def quick(demo: Path, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("exp") / "quick"
    args = ["experiments", str(demo), "--out", str(out), "--quick", "--workers", "0"]
    with one_torch_thread():
        result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out, result.output


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "a":
            self.hrefs.append(a["href"])
        if "id" in a:
            self.ids.add(a["id"])


def check_report(out: Path) -> _Refs:
    """The page parses; every image is embedded (PNG or JPEG); every link resolves."""
    refs = _Refs()
    refs.feed((out / "report.html").read_text(encoding="utf-8"))
    refs.close()
    for src in refs.srcs:
        head, payload = src.split(",", 1)
        fmt = {"data:image/png;base64": "PNG", "data:image/jpeg;base64": "JPEG"}[head]
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            assert im.format == fmt and im.width > 50
    for href in refs.hrefs:
        if href.startswith("#"):
            assert href[1:] in refs.ids, href
        else:
            assert (out / href).exists(), href
    return refs


def test_quick_grid_writes_complete_results(quick):
    out, output = quick
    rows = read_csv(out / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows)
    assert [(r["input"], r["augment"]) for r in rows] == [
        ("spatial", "on"),
        ("fft", "on"),
        ("spatial", "off"),
    ]
    gens = [c for c in rows[0] if c.startswith("detection_")]
    assert len(gens) >= 2
    rates = ("val_accuracy", "test_accuracy", "test_f1_weighted", "test_ap", "test_auc")
    for column in (*rates, "test_fpr_real", *gens):
        assert all(0.0 <= float(r[column]) <= 1.0 for r in rows), column
    assert all(float(r["train_seconds"]) > 0 for r in rows)
    for r in rows:  # the table says what each run's confusion matrices say
        saved = json.loads((out / "runs" / r["folder"] / "result.json").read_text())
        (tn, fp), (fn, tp) = saved["confusion"]["all"]
        assert int(r["test_n"]) == tn + fp + fn + tp
        assert float(r["test_accuracy"]) == pytest.approx((tn + tp) / int(r["test_n"]), rel=1e-5)
        assert float(r["test_fpr_real"]) == pytest.approx(fp / (tn + fp), rel=1e-5, abs=1e-9)
        for column in gens:
            (_, _), (g_fn, g_tp) = saved["confusion"][column.removeprefix("detection_")]
            assert float(r[column]) == pytest.approx(g_tp / (g_fn + g_tp), rel=1e-5, abs=1e-9)
    assert all(r["size"] == "32" and r["error"] == "" for r in rows)
    md = (out / "results.md").read_text().splitlines()
    assert len(md) == 2 + 3 and md[0].startswith("| # | input | augment | val acc | test acc")
    assert "FPR real" in md[0] and "det " in md[0] and "train time" in md[0]
    assert "| # | input |" in output  # the table is printed too

    splits = {(out / "runs" / r["folder"] / "split.csv").read_text() for r in rows}
    assert splits == {(out / "split.csv").read_text()}  # one split for every run
    for r in rows:
        run = out / "runs" / r["folder"]
        for name in ("model.ckpt", "loss.png", "confusion.png", "gradcam.png", "result.json"):
            assert (run / name).is_file(), name
        assert not (run / "last.ckpt").exists()
    refs = check_report(out)
    # table + heatmap + curves, and per run loss, confusion matrices and Grad-CAM
    assert len(refs.srcs) == 2 + 3 * 3
    assert sum(h.startswith("runs/") for h in refs.hrefs) == 3


def test_rerun_skips_finished_runs(quick, demo, monkeypatch):
    out, _ = quick
    first = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    result = runner.invoke(app, ["experiments", str(demo), "-o", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert result.output.count("done, skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == first

    # a run whose training finished but whose evaluation did not: evaluated, not retrained
    run = sorted(out.glob("runs/*"))[0]
    history = (run / "history.csv").stat().st_mtime_ns
    (run / "result.json").unlink()
    assert read_csv(out / "results.csv")[0]["status"] == "done"
    result = runner.invoke(app, ["experiments", str(demo), "-o", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert result.output.count("done, skipped") == 2
    assert (run / "result.json").is_file() and (run / "history.csv").stat().st_mtime_ns == history

    # DIR/split.csv remade: the runs were trained on another split, so they train again
    split = out / "split.csv"
    lines = split.read_text().splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.rstrip().endswith(",test"))
    lines[i] = lines[i].rstrip()[: -len("test")] + "val\n"
    split.write_text("".join(lines))
    result = runner.invoke(app, ["experiments", str(demo), "-o", str(out), "--quick", "--dry-run"])
    assert result.exit_code == 0 and result.output.count("| pending |") == 3
    retrained = []
    monkeypatch.setattr(experiments, "_run_one", lambda spec, *a: retrained.append(spec.folder))
    run_experiments(demo, out, load_grid(None, quick=True), workers=0, console=QUIET)
    assert len(retrained) == 3 and not list(out.glob("runs/*/result.json"))
    assert not list(out.glob("runs/*/metrics.json"))


@needs_toml
def test_interrupted_and_failed_runs(demo: Path, tmp_path: Path, monkeypatch):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(
        """
mode = "product"
[base]
arch = "efficientnet_lite0"
weights = "none"
size = 32
epochs = 1
batch_size = 8
max_steps = 1
[axes]
input = ["spatial", "fft"]
[[runs]]
weights = "missing-weights.pth"
"""
    )
    grid = load_grid(grid_file)
    out = tmp_path / "exp"
    import dfscan.train.fit.evaluate as evaluate_module

    real_evaluate = evaluate_module.evaluate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiments(demo, out, grid, workers=0, device="cpu", cam_images=2, console=QUIET)
    rows = read_csv(out / "results.csv")
    assert [r["status"] for r in rows] == ["done", "pending", "pending"]
    assert "pending" in (out / "results.md").read_text()
    check_report(out)
    trained = out / "runs" / rows[1]["folder"] / "history.csv"
    trained_at = trained.stat().st_mtime_ns

    monkeypatch.setattr(evaluate_module, "evaluate", real_evaluate)
    result = run_experiments(demo, out, grid, workers=0, device="cpu", console=QUIET)
    assert [r["status"] for r in result.rows] == ["done", "done", "failed"]
    assert trained.stat().st_mtime_ns == trained_at  # evaluated again, not retrained
    failed = result.failed[0]
    assert "missing-weights.pth" in failed["error"] and failed["weights"] == "missing-weights.pth"
    rows = read_csv(out / "results.csv")
    assert rows[2]["status"] == "failed" and "missing-weights.pth" in rows[2]["error"]
    assert rows[2]["test_accuracy"] == ""
    md = (out / "results.md").read_text()
    assert "failed: ModelError" in md  # the weights file is missing: the model cannot be built
    error = json.loads((out / "runs" / rows[2]["folder"] / "error.json").read_text())
    assert "Traceback" in error["traceback"]
    refs = check_report(out)
    assert "failed" in (out / "report.html").read_text()
    assert len(refs.srcs) == 2 + 2 * 3


@needs_toml
def test_builtin_grids_expand(tmp_path: Path):
    seed = load_grid(None).expand()
    assert len(seed) == 24 and len({s.folder for s in seed}) == 24
    assert {s.settings["train_layers"] for s in seed} == {"layer4", "layer3,layer4", "all"}
    assert {(s.settings["arch"], s.settings["weights"]) for s in seed} == {
        ("resnet50", "imagenet"),
        ("efficientnet_v2_s", "imagenet"),
    }
    demo30 = load_grid("demo30").expand()
    assert len(demo30) == 3 * 2 * 2 + 3  # the product, then three runs off the baseline
    assert {s.settings["arch"] for s in demo30[:12]} == {"efficientnet_lite0"}
    assert [s.settings["arch"] for s in demo30[12:]] == [
        "efficientnet_lite0",
        "resnet50",
        "efficientnet_v2_s",
    ]
    assert all(s.settings["weights"] == "none" for s in demo30[12:])
    assert all(s.settings["train_layers"] == "all" for s in demo30[12:])
    one_at_a_time = parse_grid(
        {"mode": "one-at-a-time", "axes": {"input": ["spatial", "fft"], "lr": [1e-3, 1e-4, 1e-3]}},
        "g",
    ).expand()
    assert [(s.settings["input"], s.settings["lr"]) for s in one_at_a_time] == [
        ("spatial", 1e-3),
        ("fft", 1e-3),
        ("spatial", 1e-4),
    ]  # the baseline, then one change at a time, duplicates dropped
    quick = load_grid("seed", quick=True).expand()
    assert len(quick) == 24 and {s.settings["size"] for s in quick} == {32}
    for name in BUILTIN_GRIDS:  # what --show-grid prints reads back as the same grid
        grid = load_grid(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(grid_toml(grid))
        assert [s.key for s in load_grid(path).expand()] == [s.key for s in grid.expand()]


@needs_toml
@pytest.mark.parametrize(
    "text,message",
    [
        ("mode = 'random'", "mode 'random'"),
        ("[base]\nepochs = 0", "epochs = 0: must be an integer"),
        ("[axes]\narch = ['resnet50', 'vgg']", "arch = 'vgg'"),
        ("[axes]\ntrain_layers = ['layer9']", "train_layers"),
        ("[axes]\noptimizer = ['sgd']", "unknown key 'optimizer'"),
        ("[axes]\ninput = []", "non-empty list"),
        ("[base\n", "not valid TOML"),
    ],
)
def test_grid_errors(text, message, tmp_path: Path):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_grid(path)


def test_cli_grid_options(tmp_path: Path):
    result = runner.invoke(app, ["experiments", "--grid", "demo30", "--show-grid"])
    assert result.exit_code == 0 and '[[runs]]\narch = "resnet50"' in result.stdout
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"base": {"arch": "resnet50"}, "axes": {"lr": [0.1, 0.01]}}))
    result = runner.invoke(
        app, ["experiments", str(tmp_path), "--grid", str(path), "--dry-run", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "2 runs" in result.output and "| 0.1 |" in result.output
    out = tmp_path / "held"
    args = ["experiments", str(tmp_path), "--grid", str(path), "-o", str(out), "--dry-run"]
    result = runner.invoke(app, [*args, "--holdout", "families"])  # a dry run trains nothing
    assert result.exit_code == 0 and "2 runs" in result.output, result.output
    assert not out.exists() or not any(out.iterdir())
    result = runner.invoke(app, ["experiments", str(tmp_path), "--grid", "nope.toml"])
    assert result.exit_code == 2 and "grid file not found" in result.output
    result = runner.invoke(app, ["experiments", str(tmp_path / "none"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["experiments", "--quick"])
    assert result.exit_code == 2 and "missing DATA" in result.output


def test_every_run_failing_exits_nonzero(demo: Path, tmp_path: Path):
    """A study where nothing trained is a failure for scripts, not exit 0 (issue 11 point 6)."""
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"base": {"arch": "efficientnet_lite0", "weights": "nope.pth"}}))
    args = ["experiments", str(demo), "--out", str(tmp_path / "x"), "--grid", str(grid)]
    result = runner.invoke(app, [*args, "--quick", "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "every run failed" in result.output

"""dfscan bench: every stage runs and the JSON report has every field (figures not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfscan.scanner.bench.run import REQUIRED_FIELDS, missing_fields
from dfscan.scanner.cli.app import app
from dfscan.scanner.cli.bench import bench_rows
from dfscan.scanner.serve.bench_stage import serve_installed
from tests.onnx_models import brightness_meta, brightness_model

runner = CliRunner()
SERVE_32 = "serve, concurrency 32 / scan (jpeg)"
SERVE_1 = "serve, concurrency 1 / scan (jpeg)"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return brightness_model(tmp_path / "m.onnx", brightness_meta(size=32))


def _bench(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["bench", *args])
    return result.exit_code, result.output


def test_smoke_runs_every_stage(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "bench.json"
    code, output = _bench(
        "--model", str(tiny_model), "--smoke", "--json", str(out), "--device", "cpu"
    )
    assert code == 0, output
    report = json.loads(out.read_text())
    assert missing_fields(report) == []
    assert set(report["decode"]) == {"jpeg", "png"}
    for d in report["decode"].values():
        assert d["images"] == 4 and d["errors"] == 0 and d["images_per_s_pool"] > 0
    assert [r["batch_size"] for r in report["model_only"]] == [1, 2]
    assert all(r["latency_p95_ms"] >= r["latency_p50_ms"] > 0 for r in report["model_only"])
    for s in report["scan"].values():
        assert s["images"] == 4 and s["errors"] == 0 and s["fraction_of_model_only"] > 0
    assert [m["files"] for m in report["memory"]] == [20, 40]
    assert all(
        m["peak_rss_mb"] and m["peak_rss_mb"] < report["peak_rss_mb"] * 4 for m in report["memory"]
    )
    for name, p in report["provenance"].items():  # plain files declare nothing, copies do
        assert p["ms_per_image"] > 0 and p["declaring"] == (
            p["images"] if "declaring" in name else 0
        )
    assert report["scan"]["jpeg"]["images_per_s_without_provenance"] > 0
    assert report["cli_startup_s"]["help"] > 0 and report["torch"] is None
    assert report["cli_startup_s"]["rounds"] == 3
    for name, ratio in report["ratios"].items():  # every ratio: median, spread, rounds, rates
        assert ratio["rounds"] == 3, name
        low, high = ratio["spread"]
        assert low <= ratio["median"] <= high
        assert ratio["numerator_images_per_s"] > 0 and ratio["denominator_images_per_s"] > 0
    assert set(report["ratios"]) == {
        "scan / model only (jpeg)",
        "scan / model only (png)",
        "scan / limit (jpeg)",
        "scan / limit (png)",
        "scan with / without provenance (jpeg)",
        "scan, region / whole-image decode (jpeg)",
    } | ({SERVE_32, SERVE_1} if serve_installed() else set())
    assert report["scan"]["jpeg"]["images_per_s_whole_image_decode"] > 0
    limit = report["limit"]
    assert limit["cores"] >= 1 and limit["model_core_ms"] > 0 and limit["batch_size"] == 2
    assert limit["model_cores_busy"] > 0
    for fmt, s in report["scan"].items():
        assert limit[fmt]["decode_core_ms"] > 0
        cores_per_image = limit[fmt]["decode_core_ms"] + limit["model_core_ms"]
        assert limit[fmt]["images_per_s"] == pytest.approx(1e3 * limit["cores"] / cores_per_image)
        assert s["fraction_of_limit"] == report["ratios"][f"scan / limit ({fmt})"]["median"]
        assert 0 < s["cores_busy"] <= 4 * limit["cores"]
    for d in report["decode"].values():  # crop mode: the region decode beside the whole one
        assert d["region_vs_full"]["rounds"] == 3
        assert d["images_per_s_1_thread_full_decode"] > 0
    rows = {(stage, what) for stage, what, _, _ in bench_rows(report)}
    assert ("limit", "jpeg") in rows and ("decode+preprocess", "png, 1 thread, whole image") in rows
    assert report["model"]["provider"] == "CPUExecutionProvider"
    assert "end-to-end scan" in output and "model only" in output


def test_bench_on_a_folder(tiny_model: Path, tiny_dataset: Path):
    code, output = _bench(
        "--model", str(tiny_model), str(tiny_dataset), "--smoke", "--device", "cpu"
    )
    assert code == 0, output
    assert str(tiny_dataset) in " ".join(output.split())


def test_missing_fields_names_what_is_missing():
    assert missing_fields({}) == list(REQUIRED_FIELDS)
    assert "cli_startup_s.help" in missing_fields({"cli_startup_s": {"version": 0.1}})


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--model", "nope.onnx", "--smoke"], 4, "model not found"),
        (["--batch-sizes", "1,x"], 2, "comma-separated integers"),
    ],
)
def test_bench_errors(args: list[str], code: int, message: str, tiny_model: Path):
    if "--model" not in args:
        args = ["--model", str(tiny_model), *args]
    result, output = _bench(*args)
    assert result == code, output
    assert message in " ".join(output.split())


@pytest.mark.slow
def test_smoke_with_a_checkpoint_measures_the_pytorch_side(tmp_path: Path):
    pytest.importorskip("onnx")
    from tests.export.test_export import random_checkpoint

    ckpt = random_checkpoint(tmp_path / "m.ckpt", "efficientnet_lite0", "spatial", size=32)
    from dfscan.export.exporter import export_checkpoint

    export_checkpoint(ckpt, tmp_path / "m.onnx")
    out = tmp_path / "bench.json"
    code, output = _bench(
        "--model",
        str(tmp_path / "m.onnx"),
        "--checkpoint",
        str(ckpt),
        "--smoke",
        "--json",
        str(out),
        "--device",
        "cpu",
    )
    assert code == 0, output
    torch_part = json.loads(out.read_text())["torch"]
    names = {r["name"] for r in torch_part["runtimes"]}
    assert {"TorchScript", "ORT CPU fp32", "ORT CPU int8", "ORT CPU fp32 (fft)"} <= names
    assert any(n.startswith("seed pipeline") for n in names)
    for key in (
        "ORT fp32 / eager",
        "int8 / fp32",
        "fft / spatial (ORT fp32)",
        "scan / seed pipeline",
    ):
        ratio = torch_part["ratios"][key]
        assert ratio["median"] > 0 and ratio["rounds"] == 3 and len(ratio["spread"]) == 2


@pytest.mark.skipif(not serve_installed(), reason="the [serve] extra is missing (dfscan[serve])")
def test_smoke_has_the_serve_row(tiny_model: Path, tmp_path: Path):
    """The HTTP server against the scan: throughput ratios from the same rounds, latency at
    concurrency 1 and 32, and its rows in the table (figures not asserted)."""
    out = tmp_path / "bench.json"
    code, output = _bench(
        "--model", str(tiny_model), "--smoke", "--json", str(out), "--device", "cpu"
    )
    assert code == 0, output
    report = json.loads(out.read_text())
    serve = report["serve"]
    assert serve["images"] == 4 and serve["provider"] == "CPUExecutionProvider"
    assert serve["requests_per_call"] == {"32": 64, "1": 4}
    assert serve["mean_batch"] >= 1
    for c in (32, 1):
        row = serve[f"concurrency_{c}"]
        assert row["images_per_s"] > 0 and row["vs_scan"] > 0
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        # warm-up plus one call per round, every request answered 200 (else the bench fails)
        assert row["requests"] == (1 + 3) * serve["requests_per_call"][str(c)]
        ratio = report["ratios"][f"serve, concurrency {c} / scan (jpeg)"]
        assert ratio["rounds"] == 3 and ratio["median"] == pytest.approx(row["vs_scan"])
    rows = [r for r in bench_rows(report) if r[0] == "HTTP server (serve)"]
    assert [r[1] for r in rows] == ["concurrency 32", "concurrency 1"]
    assert all("p50" in r[3] and "p99" in r[3] and "of the scan" in r[3] for r in rows)
    assert "HTTP server (serve)" in output


def test_without_the_serve_extra_the_row_is_skipped_with_a_note(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from dfscan.scanner.bench import run as bench

    monkeypatch.setattr(bench, "serve_installed", lambda: False)
    out = tmp_path / "bench.json"
    code, output = _bench(
        "--model", str(tiny_model), "--smoke", "--json", str(out), "--device", "cpu"
    )
    assert code == 0, output
    report = json.loads(out.read_text())
    assert report["serve"] is None and not any("serve" in name for name in report["ratios"])
    assert "HTTP server not measured: the [serve] extra is missing" in " ".join(output.split())

"""The HTML page of a scan: bounded memory, rebuilt from a report, and loaded in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.scan import html_report
from dfscan.scanner.scan.html_report import ReportCollector, RunInfo, write_html
from dfscan.scanner.scan.reports import Row
from dfscan.scanner.scan.run import ScanOptions, run_scan

from ..browser import CHROMIUM, CHROMIUM_FLAGS, needs_chromium
from ..conftest import write_image
from ..provenance_files import FRONT_ENDS, png_with_text

SECTIONS = (
    "run",
    "generators",
    "histograms",
    "most-fake",
    "borderline",
    "real-sample",
    "disagree",
    "errors",
)
SHA = "c" * 64
runner = CliRunner()


def row(i: int, p: float | None, generator: str = "gan", provenance: str | None = None) -> Row:
    verdict = None if p is None else ("fake" if p >= 0.5 else "real")
    error = "broken" if p is None else None
    return Row(f"x/{generator}/{i}.png", generator, p, verdict, 0.5, SHA, 8, 8, "PNG", error,
               provenance)  # fmt: skip


def test_the_collector_keeps_only_what_the_page_shows():
    rng = np.random.default_rng(0)
    scores = rng.random(50_000)
    collector = ReportCollector(shown=5, max_errors=7)
    for i, p in enumerate(scores):
        collector.add(row(i, float(p), generator=("real", "gan")[i % 2]))
    for i in range(20):
        collector.add(row(10**6 + i, None))
    assert [r.p_fake for r in collector.most_fake.rows()] == sorted(scores)[-5:][::-1]
    nearest = sorted(scores, key=lambda p: abs(p - 0.5))[:5]
    assert [r.p_fake for r in collector.borderline.rows()] == nearest
    assert len(collector.real_sample) == 5 and all(
        r.verdict == "real" for r in collector.real_sample
    )
    assert len(collector.errors) == 7 and collector.tallies.total().errors == 20
    assert sum(map(sum, collector.histograms.values())) == 50_000
    assert len(collector.histograms["real"]) == html_report.BINS


def test_the_page_escapes_what_it_shows(tmp_path: Path):
    collector = ReportCollector()
    collector.add(Row('<script>alert("x")</script>.png', "<b>gen</b>", 0.9, "fake", 0.5, SHA,
                      8, 8, "PNG", None, "png:comfyui"))  # fmt: skip
    collector.add(row(1, None))
    text = write_html(collector, collector.run_info("m.onnx"), tmp_path / "p.html").read_text()
    assert "<script>alert" not in text and "&lt;script&gt;alert" in text
    assert "<b>gen</b>" not in text


def scan_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for generator, base in (("real", 40), ("sdxl", 200), ("flux", 150)):
        for i in range(8):
            noise = rng.integers(0, 50, (40, 56, 3))
            write_image(root / generator / f"{i}.png", (base + noise).clip(0, 255).astype(np.uint8))
    png_with_text(root / "sdxl" / "comfy.png", FRONT_ENDS["comfyui"], value=20)  # disagrees
    (root / "flux" / "broken.png").write_bytes(b"not a png")
    return root


def self_contained(text: str) -> bool:
    """No resource the page would fetch: every src/href is a data: URI or an anchor."""
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text) + re.findall(r"url\(([^)]*)\)", text)
    return all(ref.startswith(("data:", "#")) for ref in refs)


def test_scan_html_and_dfscan_report_rebuild_the_same_page(tmp_path: Path, brightness_onnx):
    data = scan_folder(tmp_path / "data")
    out, jsonl, page = tmp_path / "scan.csv", tmp_path / "scan.jsonl", tmp_path / "scan.html"
    result = run_scan(
        ScanOptions([data], brightness_onnx, csv=out, jsonl=jsonl, html=page, device="cpu")
    )
    assert result.html == page and not list(tmp_path.glob("*.tmp"))
    text = page.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert self_contained(text)
    assert result.model_sha256 in text and "png:comfyui" in text and "not a readable image" in text
    assert text.count('<img src="data:image/jpeg;base64,') >= 12

    for report, name in ((out, "csv.html"), (jsonl, "jsonl.html")):
        rebuilt = runner.invoke(app, ["report", str(report), "--html", str(tmp_path / name)])
        assert rebuilt.exit_code == 0, rebuilt.output
        again = (tmp_path / name).read_text(encoding="utf-8")
        # the same tables and galleries (the run facts differ: no time in a report file)
        for section in ("generators", "histograms", "most-fake", "borderline", "errors"):
            pick = re.compile(f'<section id="{section}">.*?</section>', re.S)
            assert pick.search(again).group(0) == pick.search(text).group(0), section
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    refused = runner.invoke(app, ["report", str(foreign), "--html", str(tmp_path / "f.html")])
    assert refused.exit_code == 2 and "not a dfscan report" in refused.output
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.csv"), "--html", str(page)])
    assert missing.exit_code == 2 and "report not found" in missing.output


def test_scan_cli_html_option(tmp_path: Path, brightness_onnx):
    data = scan_folder(tmp_path / "data")
    page = tmp_path / "sub" / "page.html"
    done = runner.invoke(
        app, ["scan", str(data), "-m", str(brightness_onnx), "--device", "cpu", "--html", str(page)]
    )
    assert done.exit_code == 0, done.output
    assert page.is_file() and f"page {page}" in " ".join(done.stderr.split())


# --- in a real browser ------------------------------------------------------------------------


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
@pytest.mark.slow
def test_the_page_loads_in_headless_chromium(tmp_path: Path, brightness_onnx):
    data = scan_folder(tmp_path / "data")
    page = tmp_path / "scan.html"
    run_scan(ScanOptions([data], brightness_onnx, html=page, device="cpu"))
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout, section
    assert 'data-images-ok="true"' in dom.stdout  # every thumbnail decoded (set on load)
    assert console_messages(dom.stderr) == []

    shot = tmp_path / "report.png"
    taken = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        assert len(np.unique(np.asarray(im.convert("L").resize((64, 64))))) > 20  # not blank
    keep = os.environ.get("DFSCAN_TEST_ARTIFACTS")
    if keep:  # CI keeps the screenshot
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "scan-report.png")


@needs_chromium
@pytest.mark.slow
def test_the_browser_check_catches_broken_images(tmp_path: Path, monkeypatch):
    """The checks above can fail: a thumbnail that does not decode is a console error."""
    monkeypatch.setattr(html_report, "thumbnail", lambda path, side=0: "data:image/jpeg;base64,AA")
    collector = ReportCollector()
    collector.add(row(1, 0.9))
    page = write_html(collector, RunInfo("m.onnx"), tmp_path / "bad.html")
    dom = chromium(page, tmp_path, "--dump-dom")
    assert 'data-images-ok="false"' in dom.stdout
    assert any("images did not load" in m for m in console_messages(dom.stderr))

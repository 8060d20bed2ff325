"""Region decoding (crop mode) gives the very pixels of a full decode + crop, on every kind of
file it takes, and hands everything else to the full decode."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dfscan.scanner.bench.images import pink_noise_image
from dfscan.scanner.errors import DataError
from dfscan.scanner.model import decode_region as region
from dfscan.scanner.model import preprocess
from dfscan.scanner.model.preprocess import PreprocessConfig, decode_for, decode_prepared, prepare

HAS_TURBO = region.turbojpeg() is not None
needs_turbo = pytest.mark.skipif(not HAS_TURBO, reason="no libturbojpeg on this machine")
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """Photo-like content (1/f noise): JPEG's chroma and edges behave as on real photos."""
    return pink_noise_image(512, np.random.default_rng(3))


def full_way(source: Path | bytes, cfg: PreprocessConfig):
    img, info = decode_for(source, cfg)
    return prepare(img, cfg), info


def assert_same(source: Path | bytes, cfg: PreprocessConfig, fast: bool) -> None:
    """decode_prepared == decode_for + prepare, pixels and info; ``fast``: without the full
    decode (it is made to fail), so the region path is proven to have been taken."""
    want, want_info = full_way(source, cfg)
    if fast:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(preprocess, "decode_for", _no_full_decode)
            got, info = decode_prepared(source, cfg)
    else:
        got, info = decode_prepared(source, cfg)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    assert info == want_info


def _no_full_decode(*args, **kwargs):
    raise AssertionError("the full decode was used")


def jpeg_bytes(arr: np.ndarray, orientation: int = 1, **save) -> bytes:
    out = io.BytesIO()
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
    Image.fromarray(arr).save(out, "JPEG", **save)
    return out.getvalue()


def test_geometry_matches_exif_transpose_for_every_orientation():
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        method = TRANSPOSE.get(orientation)
        shown = Image.fromarray(stored)
        shown = np.asarray(shown if method is None else shown.transpose(method))
        h, w = shown.shape[:2]
        for _ in range(20):
            left, top = int(rng.integers(0, w)), int(rng.integers(0, h))
            box = region.Box(
                left, top, int(rng.integers(left + 1, w + 1)), int(rng.integers(top + 1, h + 1))
            )
            s = region.stored_box(box, orientation, stored.shape[1], stored.shape[0])
            part = region.orient(stored[s.top : s.bottom, s.left : s.right], orientation)
            np.testing.assert_array_equal(part, shown[box.top : box.bottom, box.left : box.right])


def test_needed_box_is_what_the_centre_crop_reads():
    assert region.needed_box(1000, 600, 224) == region.Box(388, 188, 612, 412)
    assert region.needed_box(100, 300, 224) == region.Box(0, 38, 100, 262)  # padded across
    assert region.needed_box(225, 223, 224) == region.Box(0, 0, 224, 223)


SIZES = [(9, 17), (100, 300), (224, 224), (225, 223), (333, 517), (480, 500), (512, 431)]


@needs_turbo
@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_region_is_bit_identical(tmp_path: Path, photo, subsampling, progressive):
    for i, (h, w) in enumerate(SIZES):
        arr = np.ascontiguousarray(photo[:h, :w])
        data = jpeg_bytes(arr, quality=85 + i, subsampling=subsampling, progressive=progressive)
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(data)
        for side in (64, 224):
            assert_same(path, PreprocessConfig(size=side), fast=True)


@needs_turbo
@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientations_read_the_turned_region(tmp_path: Path, photo, orientation):
    """A turned photo needs another region of the file; 4:2:0 makes the MCU 16×16, so a wrong
    region or margin shows."""
    for h, w in [(300, 200), (161, 403), (100, 60)]:
        arr = np.ascontiguousarray(photo[:h, :w])
        path = tmp_path / f"o{orientation}-{h}.jpg"
        path.write_bytes(jpeg_bytes(arr, orientation, quality=90, subsampling=2))
        assert_same(path, PreprocessConfig(size=96), fast=True)
        assert_same(path.read_bytes(), PreprocessConfig(size=96), fast=True)  # bytes sources


@needs_turbo
def test_grey_jpeg_and_padding_modes(tmp_path: Path, photo):
    grey = np.ascontiguousarray(photo[:300, :257, 1])
    path = tmp_path / "grey.jpg"
    Image.fromarray(grey, "L").save(path, quality=92)
    for padding in ("symmetric", "reflect", "edge"):
        assert_same(path, PreprocessConfig(size=128, padding=padding), fast=True)
        assert_same(path, PreprocessConfig(size=400, padding=padding), fast=True)


def test_cmyk_jpeg_takes_the_full_decode(tmp_path: Path, photo):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(photo[:200, :300]).convert("CMYK").save(path, quality=90)
    assert_same(path, PreprocessConfig(size=64), fast=False)


def test_broken_jpeg_is_the_same_data_error(tmp_path: Path, photo):
    data = jpeg_bytes(np.ascontiguousarray(photo[:256, :256]), quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    for path in (cut, junk):
        with pytest.raises(DataError) as full:
            decode_for(path, PreprocessConfig(size=64))
        with pytest.raises(DataError) as fast:
            decode_prepared(path, PreprocessConfig(size=64))
        assert fast.value.message == full.value.message
    with pytest.raises(DataError, match="cannot read file"):
        decode_prepared(tmp_path / "missing.jpg", PreprocessConfig(size=64))


def png_bytes(image: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def rgb16_png(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow does not write one), several IDAT chunks."""
    h, w = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    body = zlib.compress(rows)
    idats = b"".join(_chunk(b"IDAT", body[i : i + 999]) for i in range(0, len(body), 999))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return region.PNG_MAGIC + _chunk(b"IHDR", ihdr) + idats + _chunk(b"IEND", b"")


def png_cases(photo: np.ndarray) -> dict[str, bytes]:
    rgb = Image.fromarray(np.ascontiguousarray(photo[:301, :257]))
    alpha = Image.fromarray(photo[:301, :257, 0])
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = rgb.convert("L")
    la.putalpha(alpha)
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    exif = Image.Exif()
    exif[0x0112] = 6
    grey16 = Image.fromarray(photo[:290, :333, 0].astype(np.uint16) * 257)
    return {
        "rgb": png_bytes(rgb),
        "rgba": png_bytes(rgba),
        "la": png_bytes(la),
        "grey": png_bytes(rgb.convert("L")),
        "palette": png_bytes(pal),
        "palette-transparent": png_bytes(pal, transparency=3),
        "bilevel": png_bytes(rgb.convert("1")),
        "grey16": png_bytes(grey16),
        "rgb16": rgb16_png(photo[:200, :310].astype(np.uint16) * 251),
        "turned": png_bytes(rgb, exif=exif.tobytes()),
        "small": png_bytes(Image.fromarray(np.ascontiguousarray(photo[:30, :50]))),
    }


def test_png_rows_are_bit_identical(tmp_path: Path, photo):
    for name, data in png_cases(photo).items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        for side in (64, 200):
            assert_same(path, PreprocessConfig(size=side), fast=True)
        assert_same(path, PreprocessConfig(size=64, alpha_background=(0, 0, 0)), fast=True)


def test_png_with_chunks_after_the_pixels_takes_the_full_decode(tmp_path: Path, photo):
    """An orientation (eXIf) after IDAT is only seen by a full decode: it must still count."""
    data = png_bytes(Image.fromarray(np.ascontiguousarray(photo[:120, :200])))
    exif = Image.Exif()
    exif[0x0112] = 8
    end = data.rindex(b"IEND") - 4
    late = data[:end] + _chunk(b"eXIf", exif.tobytes()) + data[end:]
    assert not region.png_tail_is_plain(late) and region.png_tail_is_plain(data)
    path = tmp_path / "late.png"
    path.write_bytes(late)
    assert_same(path, PreprocessConfig(size=64), fast=False)
    assert decode_prepared(path, PreprocessConfig(size=64))[1].width == 120  # turned


def test_png_cut_in_the_needed_rows_is_an_error(tmp_path: Path, photo):
    data = png_bytes(Image.fromarray(np.ascontiguousarray(photo[:300, :300])))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError):
        decode_prepared(path, PreprocessConfig(size=64))


def test_other_formats_and_modes_take_the_full_decode(tmp_path: Path, photo):
    arr = np.ascontiguousarray(photo[:150, :170])
    for ext in ("webp", "bmp", "gif", "tiff"):
        path = tmp_path / f"x.{ext}"
        Image.fromarray(arr).save(path)
        assert_same(path, PreprocessConfig(size=64), fast=False)
    resize = PreprocessConfig(size=64, mode="resize")
    path = tmp_path / "r.jpg"
    path.write_bytes(jpeg_bytes(arr, quality=90))
    assert_same(path, resize, fast=False)


def test_switched_off_decodes_whole_images(tmp_path: Path, photo, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(np.ascontiguousarray(photo[:100, :100])).save(path)
    monkeypatch.setenv(region.FAST_DECODE_ENV, "0")
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        return decode_for(*args, **kwargs)

    monkeypatch.setattr(preprocess, "decode_for", spy)
    decode_prepared(path, PreprocessConfig(size=64))
    assert calls


def test_without_libturbojpeg_jpegs_take_the_full_decode(tmp_path: Path, photo, monkeypatch):
    monkeypatch.setattr(region, "_turbo", None)
    monkeypatch.setattr(region, "_turbo_tried", True)
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(np.ascontiguousarray(photo[:200, :200]), quality=90))
    assert_same(path, PreprocessConfig(size=64), fast=False)


def test_exif_transpose_reference_is_pillows(tmp_path: Path, photo):
    """The reference itself: decode_for turns a JPEG as ImageOps.exif_transpose does."""
    path = tmp_path / "t.jpg"
    path.write_bytes(jpeg_bytes(np.ascontiguousarray(photo[:60, :90]), 6, quality=95))
    img, info = decode_for(path, PreprocessConfig(size=32))
    with Image.open(path) as im:
        assert img.size == ImageOps.exif_transpose(im).size == (60, 90)
    assert (info.width, info.height) == (60, 90)


@needs_turbo
def test_each_thread_has_its_own_handles_and_frees_them(tmp_path: Path, photo):
    """Decoding threads come and go with every scan's pool: their handles go with them."""
    import gc
    import threading
    import weakref

    turbo = region.turbojpeg()
    assert turbo is not None
    data = jpeg_bytes(np.ascontiguousarray(photo[:100, :100]), quality=90)
    seen: list[weakref.ref] = []

    def work() -> None:
        assert turbo.header(data) is not None
        seen.append(weakref.ref(turbo._handles))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert len(seen) == 2 and all(ref() is None for ref in seen)
    assert turbo._handles is turbo._handles  # and one per thread while it lives


def test_threads_decode_the_same_pixels(tmp_path: Path, photo):
    """The scanner decodes on a thread pool: region decodes at once give the serial pixels."""
    from concurrent.futures import ThreadPoolExecutor

    paths = []
    for i in range(12):
        arr = np.ascontiguousarray(np.rot90(photo, i % 4)[: 200 + 7 * i, : 300 - 5 * i])
        path = tmp_path / f"{i}.{'jpg' if i % 3 else 'png'}"
        Image.fromarray(arr).save(path, **({"quality": 90} if i % 3 else {}))
        paths.append(path)
    cfg = PreprocessConfig(size=96)
    serial = [full_way(p, cfg)[0] for p in paths]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda p: decode_prepared(p, cfg)[0], paths))
            for got, want in zip(threaded, serial, strict=True):
                np.testing.assert_array_equal(got, want)


def test_a_library_that_does_not_load_means_the_full_decode(tmp_path: Path, photo, monkeypatch):
    monkeypatch.setenv(region.TURBOJPEG_ENV, str(tmp_path / "libturbojpeg.so.0"))  # none there
    monkeypatch.setattr(region, "_turbo", None)
    monkeypatch.setattr(region, "_turbo_tried", False)
    assert region.turbojpeg() is None
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(np.ascontiguousarray(photo[:120, :130]), quality=90))
    assert_same(path, PreprocessConfig(size=64), fast=False)


def test_files_past_the_read_limit_take_the_full_decode(tmp_path: Path, photo, monkeypatch):
    """A region decode reads the file whole: a huge one is left to Pillow's streaming decode."""
    path = tmp_path / "a.png"
    Image.fromarray(np.ascontiguousarray(photo[:100, :120])).save(path)
    monkeypatch.setattr(region, "MAX_READ_BYTES", path.stat().st_size - 1)
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(
            preprocess, "decode_for", lambda *a, **k: calls.append(a) or decode_for(*a, **k)
        )
        decode_prepared(path, PreprocessConfig(size=64))
    assert calls
    assert_same(path, PreprocessConfig(size=64), fast=False)
    monkeypatch.setattr(region, "MAX_READ_BYTES", path.stat().st_size)
    assert_same(path, PreprocessConfig(size=64), fast=True)

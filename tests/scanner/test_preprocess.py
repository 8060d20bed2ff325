import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfscan.scanner.errors import DataError
from dfscan.scanner.model.preprocess import (
    PreprocessConfig,
    decode_rgb,
    decode_side,
    four_patches,
    load_image,
    open_rgb,
    prepare,
    to_chw_batch,
    to_rgb,
)

from ..conftest import write_image


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)


def test_crop_is_native_pixels_centred():
    arr = gradient(100, 120)
    out = prepare(Image.fromarray(arr), PreprocessConfig(size=64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr[18:82, 28:92])


def test_random_crop_moves_but_stays_native():
    arr = gradient(100, 120)
    rng = np.random.default_rng(0)
    crops = [prepare(Image.fromarray(arr), PreprocessConfig(size=64), rng) for _ in range(5)]
    tops_lefts = {(int(c[0, 0, 1]), int(c[0, 0, 0])) for c in crops}
    assert len(tops_lefts) > 1
    for c in crops:
        top, left = int(c[0, 0, 1]), int(c[0, 0, 0])
        np.testing.assert_array_equal(c, arr[top : top + 64, left : left + 64])


def test_small_image_is_mirror_padded_not_resampled():
    arr = gradient(40, 50)
    out = prepare(Image.fromarray(arr), PreprocessConfig(size=64))
    assert out.shape == (64, 64, 3)
    # the original pixels are there untouched, centred
    np.testing.assert_array_equal(out[12:52, 7:57], arr)
    # and the border mirrors them (symmetric padding), no new values invented
    np.testing.assert_array_equal(out[11], out[12])
    np.testing.assert_array_equal(out[0], out[23])
    np.testing.assert_array_equal(out[:, 6], out[:, 7])


def test_tiny_image_pads_past_its_size():
    out = prepare(Image.fromarray(gradient(5, 7)), PreprocessConfig(size=32))
    assert out.shape == (32, 32, 3)
    assert set(np.unique(out[..., 0])) <= set(range(7))


def test_resize_mode_keeps_aspect_and_centre():
    """A 100×100 white square in the middle of a 200×400 black image: resized by 1/4 (short side
    to 50) it stays a square (about 25×25), and the centre crop keeps it in the middle. A
    stretch to 50×50 would make it 12×25; a crop from the left would lose it."""
    arr = np.zeros((200, 400, 3), np.uint8)
    arr[50:150, 150:250] = 255
    out = prepare(Image.fromarray(arr), PreprocessConfig(size=50, mode="resize"))
    assert out.shape == (50, 50, 3)
    rows, cols = np.nonzero(out[..., 0] > 127)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(height - 25) <= 1 and abs(width - 25) <= 1
    assert abs(rows.mean() - 24.5) <= 0.5 and abs(cols.mean() - 24.5) <= 0.5


def test_four_patches_are_quadrants_of_one_region():
    arr = gradient(150, 150)
    cfg = PreprocessConfig(size=32)
    patches = four_patches(Image.fromarray(arr), cfg)
    assert patches.shape == (4, 32, 32, 3)
    region = prepare(Image.fromarray(arr), PreprocessConfig(size=64))
    np.testing.assert_array_equal(patches[0], region[:32, :32])
    np.testing.assert_array_equal(patches[3], region[32:, 32:])


def test_chw_batch():
    batch = to_chw_batch([gradient(8, 8), gradient(8, 8)])
    assert batch.shape == (2, 3, 8, 8) and batch.flags.c_contiguous


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.fromarray(gradient(16, 16)[..., 0])),
        ("I;16", lambda: Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16))),
        ("CMYK", lambda: Image.fromarray(gradient(16, 16)).convert("CMYK")),
        (
            "RGBA",
            lambda: Image.fromarray(
                np.dstack([gradient(16, 16), np.full((16, 16), 255, np.uint8)])
            ),
        ),
        ("P", lambda: Image.fromarray(gradient(16, 16)).convert("P")),
        ("1", lambda: Image.fromarray(gradient(16, 16)[..., 0] > 128)),
    ],
)
def test_every_mode_becomes_rgb(mode, make):
    im = make()
    assert im.mode == mode
    out = to_rgb(im)
    assert out.mode == "RGB" and out.size == (16, 16)


def test_sixteen_bit_is_scaled_not_clipped():
    im = Image.fromarray((np.arange(256, dtype=np.uint16) * 257).reshape(16, 16))
    grey = np.asarray(to_rgb(im))[..., 0].ravel()
    np.testing.assert_array_equal(grey, np.arange(256))


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    out = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (out == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path):
    arr = gradient(20, 40)  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    assert open_rgb(path).size == (20, 40)  # displayed portrait


def test_first_frame_of_animation(tmp_path: Path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert np.asarray(open_rgb(path))[0, 0, 0] < 50


@pytest.mark.parametrize(
    "content",
    [b"", b"this is text, not an image", None],
    ids=["zero-byte", "text", "truncated"],
)
def test_unreadable_files_raise_data_error(tmp_path: Path, content):
    path = tmp_path / "bad.jpg"
    if content is None:
        buf = io.BytesIO()
        Image.fromarray(gradient(64, 64)).save(buf, format="JPEG")
        content = buf.getvalue()[:200]
    path.write_bytes(content)
    with pytest.raises(DataError):
        load_image(path, PreprocessConfig(size=32))


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch):
    path = write_image(tmp_path / "big.png", np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64² > 2×1000: Pillow raises
    with pytest.raises(DataError, match="decompression bomb"):
        open_rgb(path)


def test_config_roundtrip_and_validation():
    cfg = PreprocessConfig(size=96, mode="resize")
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DataError):
        PreprocessConfig(mode="stretch")  # type: ignore[arg-type]


def smooth_photo(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return (127 + 120 * np.stack([np.sin(6 * x), np.cos(5 * y), np.sin(4 * (x + y))], -1)).astype(
        np.uint8
    )


def test_resize_mode_decodes_jpegs_reduced(tmp_path: Path):
    """Reduce-on-decode: a 1024x768 JPEG for a 96 model decodes at 1/8 (shorter side 96 ≥ 96),
    and still reports its real size; the prepared input stays close to the full decode's."""
    path = write_image(tmp_path / "p.jpg", smooth_photo(768, 1024), quality=95)
    cfg = PreprocessConfig(96, "resize")
    assert decode_side(cfg) == 96 and decode_side(cfg, 2) == 192
    reduced, info = decode_rgb(path, decode_side(cfg))
    assert reduced.size == (128, 96) and (info.width, info.height) == (1024, 768)
    full = prepare(open_rgb(path), cfg).astype(int)
    fast = load_image(path, cfg).astype(int)
    assert fast.shape == full.shape == (96, 96, 3)
    assert np.abs(fast - full).mean() < 2.0


def test_crop_mode_never_reduces_and_exif_size_is_reported(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(smooth_photo(300, 400)).save(path, exif=exif, quality=95)
    cfg = PreprocessConfig(64, "crop")
    assert decode_side(cfg) is None
    np.testing.assert_array_equal(load_image(path, cfg), prepare(open_rgb(path), cfg))
    img, info = decode_rgb(path, 64)  # reduced: the reported size is still the file's, turned
    assert img.size[0] < 300 and (info.width, info.height) == (300, 400)


def _pad_then_cut(arr: np.ndarray, side: int, padding: str, rng) -> np.ndarray:
    """The crop as it was first written: pad the whole image, then cut (the reference)."""
    h, w = arr.shape[:2]
    dh, dw = max(side - h, 0), max(side - w, 0)
    arr = np.pad(arr, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)), mode=padding)
    h, w = arr.shape[:2]
    top = int(rng.integers(0, h - side + 1)) if rng is not None and h > side else (h - side) // 2
    left = int(rng.integers(0, w - side + 1)) if rng is not None and w > side else (w - side) // 2
    return arr[top : top + side, left : left + side]


@pytest.mark.parametrize("padding", ["symmetric", "reflect", "edge"])
def test_cutting_before_padding_is_padding_the_whole_image(padding: str):
    """square_region cuts the image before making an array of it: the same pixels, centred and
    at random places (the same draws), whichever sides are shorter than the crop."""
    for h, w in [(40, 50), (100, 120), (64, 64), (63, 65), (65, 63), (10, 200), (200, 10)]:
        arr = gradient(h, w)
        cfg = PreprocessConfig(size=64, padding=padding)
        for seed in (None, 1, 2):
            want = _pad_then_cut(
                arr, 64, padding, None if seed is None else np.random.default_rng(seed)
            )
            rng = None if seed is None else np.random.default_rng(seed)
            got = prepare(Image.fromarray(arr), cfg, rng)
            np.testing.assert_array_equal(got, want)
            assert got.flags.c_contiguous

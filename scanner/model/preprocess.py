"""Host-side preprocessing: the one definition of image geometry used by training and scanning.

Decode → EXIF orientation → RGB → crop or resize to the model's square input. Only geometry
happens here (numpy/Pillow, no torch); the arithmetic (uint8 → float, mean/std, FFT) lives in
the model's frontend so eager, TorchScript and ONNX compute the same thing.

Why crop is the default: resampling is a low-pass filter that erases the high-frequency traces
generators leave, so ``crop`` keeps native pixels. Images smaller than the crop are padded by
mirroring (``symmetric``) rather than upscaled: mirroring invents no interpolated pixels, so it
adds no resampling traces of its own.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError
from . import decode_region as region

Mode = Literal["crop", "resize"]
MODES: tuple[Mode, ...] = ("crop", "resize")
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
Padding = Literal["symmetric", "reflect", "edge"]
PADDINGS: tuple[Padding, ...] = ("symmetric", "reflect", "edge")  # numpy.pad modes
CropPlan = Literal["center"]
CROP_PLANS: tuple[CropPlan, ...] = ("center",)
PREPROCESS_VERSION = 2
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
ORIENTATION_TAG = 0x0112
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as browsers do

ImageSource = str | Path | BinaryIO | bytes | Image.Image


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the model's ``size``×``size`` RGB input; travels with the model.

    Every choice that changes the pixels is a field, so the artifact says it and the code
    that trains and scans reads it from there. ``version`` numbers the recipe behind the fields
    (2: the first one recorded whole; 1: crop-mode models of checkpoint/ONNX format 1).
    """

    size: int = 224
    mode: Mode = "crop"
    interpolation: Interpolation = "bilinear"  # resize mode only
    reducing_gap: float | None = 3.0  # Pillow's two-step resize, resize mode only
    padding: Padding = "symmetric"  # images smaller than the crop
    alpha_background: tuple[int, int, int] = ALPHA_BACKGROUND
    reduce_on_decode: bool = True  # resize mode only: JPEGs decoded at 1/2-1/8 by libjpeg
    crop_plan: CropPlan = "center"  # which region(s) of an image are scored
    version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        checks = (
            ("preprocessing mode", self.mode, MODES),
            ("interpolation", self.interpolation, tuple(INTERPOLATIONS)),
            ("padding", self.padding, PADDINGS),
            ("crop plan", self.crop_plan, CROP_PLANS),
        )
        for what, value, allowed in checks:
            if value not in allowed:
                raise DataError(f"unknown {what} {value!r}; use one of {allowed}")
        if self.size < 8:
            raise DataError(f"input size {self.size} is too small (minimum 8)")
        if len(self.alpha_background) != 3 or not all(0 <= c <= 255 for c in self.alpha_background):
            raise DataError(f"alpha background must be 3 values 0-255, got {self.alpha_background}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alpha_background"] = list(self.alpha_background)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Strict: every field must be there (a spec that omits one would be guessed)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise DataError(f"preprocessing settings lack {', '.join(missing)}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise DataError(f"unknown preprocessing settings {', '.join(unknown)}")
        gap = data["reducing_gap"]
        return cls(
            size=int(data["size"]),
            mode=data["mode"],
            interpolation=data["interpolation"],
            reducing_gap=None if gap is None else float(gap),
            padding=data["padding"],
            alpha_background=tuple(int(c) for c in data["alpha_background"]),  # type: ignore[arg-type]
            reduce_on_decode=bool(data["reduce_on_decode"]),
            crop_plan=data["crop_plan"],
            version=int(data["version"]),
        )


def has_image_extension(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class SourceInfo:
    """What the scanner reports about a decoded file besides its pixels."""

    width: int  # after EXIF orientation, i.e. as the model sees it
    height: int
    format: str | None  # Pillow's name: JPEG, PNG, WEBP, GIF, ...
    animated: bool  # only the first frame was used


def decode_side(cfg: PreprocessConfig, regions: int = 1) -> int | None:
    """How small a JPEG may be decoded for ``cfg`` (reduce-on-decode), or None: not at all.

    ``resize`` resamples anyway, so libjpeg may scale by 1/2, 1/4 or 1/8 in the DCT domain
    while the shorter side stays ≥ the ``regions``·size it needs: a 1024² photo for a 224 model
    decodes at 256², 16× fewer pixels. ``crop`` keeps native pixels and is never reduced.
    Training and scanning both decode through here, so both see the same pixels.
    """
    return cfg.size * regions if cfg.mode == "resize" and cfg.reduce_on_decode else None


_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90°


def open_rgb(
    source: ImageSource,
    draft_side: int | None = None,
    background: tuple[int, int, int] = ALPHA_BACKGROUND,
) -> Image.Image:
    """Decode the first frame, apply EXIF orientation and convert to 8-bit RGB.

    Raises ``DataError`` for anything that is not a decodable image (including Pillow's
    decompression-bomb error, which stays enabled). ``draft_side``: see :func:`decode_side`.
    """
    return decode_rgb(source, draft_side, background)[0]


def decode_for(
    source: ImageSource, cfg: PreprocessConfig, regions: int = 1
) -> tuple[Image.Image, SourceInfo]:
    """:func:`decode_rgb` as ``cfg`` says (reduce-on-decode, alpha background): what training
    and scanning both call, so the model's spec decides the pixels."""
    return decode_rgb(source, decode_side(cfg, regions), cfg.alpha_background)


def decode_rgb(
    source: ImageSource,
    draft_side: int | None = None,
    background: tuple[int, int, int] = ALPHA_BACKGROUND,
) -> tuple[Image.Image, SourceInfo]:
    """:func:`open_rgb` plus what the file was (format, size, animation), from the same decode.

    The reported size is the file's (after EXIF orientation), also when the JPEG was decoded
    reduced.
    """
    if isinstance(source, Image.Image):
        rgb = to_rgb(ImageOps.exif_transpose(source), background)
        return rgb, SourceInfo(*rgb.size, source.format, bool(getattr(source, "is_animated", 0)))
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with _readable(), Image.open(source) as im:
        animated = bool(getattr(im, "is_animated", False))
        im.seek(0)  # animated GIF/WebP: the first frame
        width, height = im.size
        if im.getexif().get(ORIENTATION_TAG, 1) in _SWAPS_SIDES:
            width, height = height, width
        if draft_side is not None and im.format == "JPEG":
            im.draft(None, (draft_side, draft_side))
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to turn
        rgb = to_rgb(im, background)
        return rgb, SourceInfo(width, height, im.format, animated)


@contextmanager
def _readable() -> Iterator[None]:
    """Pillow's and the OS's exceptions for a file that is not a usable image → DataError."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise DataError(f"refused, possible decompression bomb: {exc}") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file itself could not be read (permissions, vanished)
            raise DataError(f"cannot read file: {exc.strerror or exc}") from exc
        raise DataError(f"not a readable image: {exc}") from exc
    except (SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # what Pillow's decoders raise on broken headers, bad tiles, short or malformed fields
        raise DataError(f"not a readable image: {type(exc).__name__}: {exc}") from exc


def to_rgb(im: Image.Image, background: tuple[int, int, int] = ALPHA_BACKGROUND) -> Image.Image:
    """Any Pillow mode → 8-bit RGB: 16-bit scaled, alpha composited on ``background`` (white by
    default), CMYK converted."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        peak = 65535.0 if im.mode != "I" or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        grey = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = im.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(under, rgba).convert("RGB")
    return im.convert("RGB")


def _pad_to(arr: np.ndarray, side: int, padding: Padding = "symmetric") -> np.ndarray:
    """Pad an HWC array (mirroring by default) so both sides are at least ``side`` (centred)."""
    h, w = arr.shape[:2]
    dh, dw = max(side - h, 0), max(side - w, 0)
    if not dh and not dw:
        return arr
    pads = ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0))
    return np.pad(arr, pads, mode=padding)


def _offset(extent: int, side: int, rng: np.random.Generator | None) -> int:
    slack = extent - side
    if slack <= 0:
        return 0
    return int(rng.integers(0, slack + 1)) if rng is not None else slack // 2


def square_region(
    img: Image.Image, side: int, cfg: PreprocessConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """A ``side``×``side`` uint8 RGB array: centred, or at a random place when ``rng`` is given."""
    if cfg.mode == "resize":
        w, h = img.size
        scale = side / min(w, h)
        new = (max(side, round(w * scale)), max(side, round(h * scale)))
        if new != (w, h):
            img = img.resize(new, INTERPOLATIONS[cfg.interpolation], reducing_gap=cfg.reducing_gap)
    # Cut before converting to an array (Pillow's tobytes of a 12-MP image costs more than
    # decoding it), then pad: padding only grows a side shorter than ``side``, which is kept
    # whole, so this is the same as padding the whole image and cutting it.
    w, h = img.size
    top, left = _offset(max(h, side), side, rng), _offset(max(w, side), side, rng)
    rows = (top, top + side) if h >= side else (0, h)
    cols = (left, left + side) if w >= side else (0, w)
    if (cols[0], rows[0], cols[1], rows[1]) != (0, 0, w, h):
        img = img.crop((cols[0], rows[0], cols[1], rows[1]))
    return np.ascontiguousarray(_pad_to(np.asarray(img), side, cfg.padding))


def prepare(
    img: Image.Image, cfg: PreprocessConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The model input for one RGB image: (size, size, 3) uint8, HWC."""
    return square_region(img, cfg.size, cfg, rng)


def four_patches(
    img: Image.Image, cfg: PreprocessConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The seed's 4-patch split: a 2·size square region cut into its four quadrants.

    Returns (4, size, size, 3) uint8. In ``crop`` mode the region is native pixels (padded by
    mirroring when the image is smaller), so each patch is a full-resolution view.
    """
    s = cfg.size
    region = square_region(img, 2 * s, cfg, rng)
    return np.stack(
        [region[:s, :s], region[:s, s:], region[s:, :s], region[s:, s:]],
    )


def load_image(
    source: ImageSource, cfg: PreprocessConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Decode and prepare in one call: what the scanner feeds the model."""
    if rng is None:
        return decode_prepared(source, cfg)[0]
    return prepare(decode_for(source, cfg)[0], cfg, rng)


def decode_prepared(source: ImageSource, cfg: PreprocessConfig) -> tuple[np.ndarray, SourceInfo]:
    """``prepare(decode_for(source, cfg))`` and the file's info, decoding only what it reads.

    In crop mode a JPEG (through libturbojpeg, when the system has it) or a plain PNG is
    decoded in the region the centred crop reads (:mod:`dfscan.scanner.model.decode_region`); the
    pixels are bit-identical to decoding everything, and whatever that path does not cover
    takes the full decode. Training calls :func:`decode_for` and :func:`prepare` itself (its
    crops are random), which give the same pixels.
    """
    if cfg.mode == "crop" and region.fast_decode_enabled():
        done, read = _decode_centre_crop(source, cfg)
        if done is not None:
            return done
        source = source if read is None else read  # not read twice
    img, info = decode_for(source, cfg)
    return prepare(img, cfg), info


def _read_head(source: ImageSource) -> tuple[bytes | None, str | Path | None]:
    """(bytes of a bytes source, or None; path of a path source, or None)."""
    if isinstance(source, bytes):
        return source, None
    if isinstance(source, str | Path):
        return None, source
    return None, None  # open files and Pillow images take the full decode


def _decode_centre_crop(
    source: ImageSource, cfg: PreprocessConfig
) -> tuple[tuple[np.ndarray, SourceInfo] | None, bytes | None]:
    """(the crop and info, or None: take the full decode; the file's bytes if they were read).

    An error while reading or decoding also means the full decode: it raises the DataError it
    always raised, with the same message (one that names the file, not a buffer).
    """
    data, path = _read_head(source)
    if data is None and path is None:
        return None, None
    try:
        if data is None:
            assert path is not None
            with open(path, "rb") as f:
                magic = f.read(len(region.PNG_MAGIC))
                if not magic.startswith(region.JPEG_MAGIC) and magic != region.PNG_MAGIC:
                    return None, None  # another format: the full decode opens it
                if magic.startswith(region.JPEG_MAGIC) and region.turbojpeg() is None:
                    return None, None
                if os.fstat(f.fileno()).st_size > region.MAX_READ_BYTES:
                    return None, None  # Pillow streams it (and refuses bombs from the header)
                data = magic + f.read()
        if data.startswith(region.JPEG_MAGIC):
            got = _jpeg_region(data, cfg)
        elif data.startswith(region.PNG_MAGIC):
            got = _png_region(data, cfg)
        else:
            return None, data
    except (
        Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError, IndexError,
        struct.error,
    ):  # fmt: skip
        return None, None
    if got is None:
        return None, data
    pixels, orientation, info = got
    arr = region.orient(pixels, orientation)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)  # what Pillow's L → RGB does
    return (np.ascontiguousarray(_pad_to(arr, cfg.size, cfg.padding)), info), data


def _oriented(im: Image.Image) -> tuple[int, int, int]:
    """(orientation, displayed width, displayed height), as ``exif_transpose`` will see them."""
    orientation = Image.Image.getexif(im).get(ORIENTATION_TAG, 1)  # no load (PngImageFile's does)
    w, h = im.size
    return (orientation, h, w) if orientation in _SWAPS_SIDES else (orientation, w, h)


Region = tuple[np.ndarray, int, SourceInfo]  # stored pixels of the box (HW1 or HW3), EXIF turn


def _jpeg_region(data: bytes, cfg: PreprocessConfig) -> Region | None:
    turbo = region.turbojpeg()
    if turbo is None:
        return None
    with Image.open(io.BytesIO(data)) as im:  # the header only: format, size, EXIF
        if im.format != "JPEG" or im.mode not in ("RGB", "L"):
            return None
        orientation, width, height = _oriented(im)
        stored, grey = im.size, im.mode == "L"
    header = turbo.header(data)
    if header is None or not header.supported or (header.width, header.height) != stored:
        return None
    if header.grey != grey:
        return None
    box = region.stored_box(region.needed_box(width, height, cfg.size), orientation, *stored)
    pixels = turbo.region(data, header, box)
    if pixels is None:
        return None  # damaged, or something libturbojpeg warns about: Pillow decides
    return pixels, orientation, SourceInfo(width, height, "JPEG", False)


def _png_region(data: bytes, cfg: PreprocessConfig) -> Region | None:
    if not region.png_tail_is_plain(data):
        return None
    with Image.open(io.BytesIO(data)) as im:
        if getattr(im, "is_animated", False) or im.mode in ("I", "F"):
            return None  # APNG frames; modes whose RGB depends on the whole image's maximum
        orientation, width, height = _oriented(im)
        box = region.stored_box(region.needed_box(width, height, cfg.size), orientation, *im.size)
        if not region.limit_png_rows(im, box.bottom):
            return None
        im.load()
        part = im.crop((box.left, box.top, box.right, box.bottom))
    rgb = np.asarray(to_rgb(part, cfg.alpha_background))
    return rgb, orientation, SourceInfo(width, height, "PNG", False)


def to_chw_batch(images: list[np.ndarray]) -> np.ndarray:
    """Stack HWC uint8 arrays into the NCHW uint8 batch the models take."""
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))

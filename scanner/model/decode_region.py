"""Decode only the pixels a crop-mode model reads, bit-identical to decoding everything.

A 224² centre crop of a 12-megapixel photo reads 0.4 % of its pixels. The pieces here let
:func:`dfscan.scanner.model.preprocess.decode_prepared` decode (about) that region alone:

- **Geometry**: which rectangle of the *displayed* image the crop reads (:func:`needed_box`),
  where that rectangle lies in the *stored* image under each EXIF orientation
  (:func:`stored_box`: a turned photo needs another region of the file), and how the decoded
  region is turned like ``ImageOps.exif_transpose`` turns the whole image (:func:`orient`).
- **JPEG** through the system's libturbojpeg (TurboJPEG API 2, also in libjpeg-turbo 3), loaded
  with ctypes when present (Debian: ``libturbojpeg0``), otherwise not used: a lossless crop
  (``tjTransform``; the coefficients are not decoded to pixels, only copied) of the region
  widened to whole MCUs plus one MCU on every side, then the small JPEG is decoded and the region
  cut out. The extra MCU matters: libjpeg's fancy upsampling reads the neighbouring chroma
  samples, and at the edge of a cropped image it replicates the edge instead, so without the
  margin the outer pixels would differ. Both Pillow's bundled libjpeg-turbo and libturbojpeg
  decode with the same defaults (accurate integer IDCT, fancy upsampling), so the pixels are
  the same; ``tests/scanner/test_decode_region.py`` proves it over sizes, subsamplings, progressive
  files and orientations. Warnings stop the decoder (``TJFLAG_STOPONWARNING``): a damaged
  file is left to Pillow, which reports it as it always did.
- **PNG** (non-interlaced): Pillow's ``zip`` tile limited to the rows up to the last needed
  one; the rows above must be inflated anyway (one deflate stream), the rows below are not.

Whatever does not fit (other formats, CMYK or RGB-coded JPEGs, other subsamplings, interlaced or
animated PNGs, chunks after the image data) returns None and the caller decodes as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import ImageFile

FAST_DECODE_ENV = "DFSCAN_FAST_DECODE"  # "0": always decode whole images (for comparisons)
TURBOJPEG_ENV = "DFSCAN_TURBOJPEG"  # a path to libturbojpeg, instead of the loader's search

MAX_READ_BYTES = 256 * 2**20  # larger files are not read into memory whole: full decode
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels: columns ``left``..``right``-1, rows ``top``..``bottom``-1."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _span(extent: int, side: int) -> tuple[int, int]:
    """The centred ``side`` of ``extent`` (all of it when shorter: it is padded, not cut)."""
    if extent <= side:
        return 0, extent
    start = (extent - side) // 2
    return start, start + side


def needed_box(width: int, height: int, side: int) -> Box:
    """What a centred ``side``² crop of a ``width``×``height`` (displayed) image reads.

    Matches :func:`dfscan.scanner.model.preprocess.square_region` in crop mode: pad to ``side``
    (centred), then cut the centre; padding never reaches past the image, so the crop reads
    the centred ``min(extent, side)`` on each axis and pads that.
    """
    left, right = _span(width, side)
    top, bottom = _span(height, side)
    return Box(left, top, right, bottom)


# Where displayed pixel (X, Y) is stored, per EXIF orientation, for a stored w×h image:
# 1 (X, Y)  2 (w-1-X, Y)  3 (w-1-X, h-1-Y)  4 (X, h-1-Y)
# 5 (Y, X)  6 (Y, h-1-X)  7 (w-1-Y, h-1-X)  8 (w-1-Y, X)
def stored_box(box: Box, orientation: int, width: int, height: int) -> Box:
    """``box`` of the displayed image as a box of the stored ``width``×``height`` image."""
    b = box
    if orientation == 2:
        return Box(width - b.right, b.top, width - b.left, b.bottom)
    if orientation == 3:
        return Box(width - b.right, height - b.bottom, width - b.left, height - b.top)
    if orientation == 4:
        return Box(b.left, height - b.bottom, b.right, height - b.top)
    if orientation == 5:
        return Box(b.top, b.left, b.bottom, b.right)
    if orientation == 6:
        return Box(b.top, height - b.right, b.bottom, height - b.left)
    if orientation == 7:
        return Box(width - b.bottom, height - b.right, width - b.top, height - b.left)
    if orientation == 8:
        return Box(width - b.bottom, b.left, width - b.top, b.right)
    return b  # 1, and values outside 1-8, which exif_transpose ignores too


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an HWC array as ``ImageOps.exif_transpose`` turns an image (exact permutations)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return arr[::-1].transpose(1, 0, 2)
    if orientation == 7:
        return arr[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return arr[:, ::-1].transpose(1, 0, 2)
    return arr


_forced_full = False


def fast_decode_enabled() -> bool:
    return not _forced_full and os.environ.get(FAST_DECODE_ENV, "1") != "0"


@contextmanager
def full_decode_only() -> Iterator[None]:
    """Decode whole images inside the block (``dfscan bench`` compares the two ways)."""
    global _forced_full
    before, _forced_full = _forced_full, True
    try:
        yield
    finally:
        _forced_full = before


# --- JPEG: libturbojpeg through ctypes ----------------------------------------------------

_TJSAMP_444, _TJSAMP_422, _TJSAMP_420, _TJSAMP_GRAY = 0, 1, 2, 3
_MCU = {_TJSAMP_444: (8, 8), _TJSAMP_422: (16, 8), _TJSAMP_420: (16, 16), _TJSAMP_GRAY: (8, 8)}
_TJCS_YCBCR, _TJCS_GRAY = 1, 2
_TJPF_RGB, _TJPF_GRAY = 0, 6
_TJXOP_NONE = 0
_TJXOPT_CROP, _TJXOPT_COPYNONE = 4, 64
_TJFLAG_STOPONWARNING = 8192


class _Region(ctypes.Structure):
    _fields_ = (("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int))


class _Transform(ctypes.Structure):
    _fields_ = (
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    )


_c_int_p = ctypes.POINTER(ctypes.c_int)


def _bind(lib: ctypes.CDLL) -> None:
    """Declare the TurboJPEG 2 functions used (ctypes releases the GIL around each call)."""
    handle, buf, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong
    lib.tjInitDecompress.restype = handle
    lib.tjInitDecompress.argtypes = []
    lib.tjInitTransform.restype = handle
    lib.tjInitTransform.argtypes = []
    lib.tjDestroy.argtypes = [handle]
    lib.tjDecompressHeader3.argtypes = [handle, buf, size, _c_int_p, _c_int_p, _c_int_p, _c_int_p]
    lib.tjDecompress2.argtypes = [
        *(handle, buf, size, ctypes.c_void_p),
        *(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int),
    ]
    lib.tjTransform.argtypes = [
        *(handle, buf, size, ctypes.c_int),
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(_Transform),
        ctypes.c_int,
    ]
    lib.tjFree.argtypes = [ctypes.c_void_p]


class _Handles:
    """One thread's decompressor and transformer (TurboJPEG handles are not shared between
    threads); freed when the thread ends and its thread-local storage drops them."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.decompress = lib.tjInitDecompress()
        self.transform = lib.tjInitTransform()

    def __del__(self) -> None:
        for h in (self.decompress, self.transform):
            if h:
                self.lib.tjDestroy(h)


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    subsampling: int
    colorspace: int

    @property
    def grey(self) -> bool:
        return self.colorspace == _TJCS_GRAY

    @property
    def supported(self) -> bool:
        """Subsamplings and colour spaces proven identical to Pillow by the tests."""
        if self.colorspace == _TJCS_GRAY:
            return self.subsampling == _TJSAMP_GRAY
        return self.colorspace == _TJCS_YCBCR and self.subsampling in _MCU


class TurboJpeg:
    """The few libturbojpeg calls a region decode needs; errors and warnings return None."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        _bind(lib)
        self.lib = lib
        self._local = threading.local()

    @property
    def _handles(self) -> _Handles:
        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = _Handles(self.lib)
        return handles

    def header(self, data: bytes) -> JpegHeader | None:
        w, h, s, c = (ctypes.c_int() for _ in range(4))
        h_ = self._handles.decompress
        if self.lib.tjDecompressHeader3(h_, data, len(data), w, h, s, c) != 0:
            return None
        return JpegHeader(w.value, h.value, s.value, c.value)

    def _decompress(self, data: bytes, width: int, height: int, grey: bool) -> np.ndarray | None:
        out = np.empty((height, width, 1 if grey else 3), np.uint8)
        fmt = _TJPF_GRAY if grey else _TJPF_RGB
        code = self.lib.tjDecompress2(
            self._handles.decompress, data, len(data), out.ctypes.data,
            width, 0, height, fmt, _TJFLAG_STOPONWARNING,
        )  # fmt: skip
        return out if code == 0 else None

    def _crop(self, data: bytes, box: Box) -> bytes | None:
        transform = _Transform(
            _Region(box.left, box.top, box.width, box.height),
            _TJXOP_NONE,
            _TJXOPT_CROP | _TJXOPT_COPYNONE,
            None,
            None,
        )
        buf, size = ctypes.c_void_p(), ctypes.c_ulong()
        code = self.lib.tjTransform(
            self._handles.transform, data, len(data), 1, ctypes.byref(buf), ctypes.byref(size),
            ctypes.byref(transform), _TJFLAG_STOPONWARNING,
        )  # fmt: skip
        try:
            return ctypes.string_at(buf, size.value) if code == 0 and buf.value else None
        finally:
            if buf.value:
                self.lib.tjFree(buf)

    def region(self, data: bytes, header: JpegHeader, box: Box) -> np.ndarray | None:
        """``box`` of the stored image, (rows, columns, 1 or 3) uint8, as a full decode gives
        it; None when libturbojpeg refuses the file or warns about it."""
        mcu_w, mcu_h = _MCU[header.subsampling]
        grey = header.colorspace == _TJCS_GRAY
        wide = Box(
            max(0, (box.left // mcu_w - 1) * mcu_w),
            max(0, (box.top // mcu_h - 1) * mcu_h),
            min(header.width, (-(-box.right // mcu_w) + 1) * mcu_w),
            min(header.height, (-(-box.bottom // mcu_h) + 1) * mcu_h),
        )
        if wide == Box(0, 0, header.width, header.height):
            small: bytes | None = data  # nothing to cut away
        else:
            small = self._crop(data, wide)
        if small is None:
            return None
        pixels = self._decompress(small, wide.width, wide.height, grey)
        if pixels is None:
            return None
        top, left = box.top - wide.top, box.left - wide.left
        return pixels[top : top + box.height, left : left + box.width]


_turbo: TurboJpeg | None = None
_turbo_tried = False
_turbo_lock = threading.Lock()


def turbojpeg() -> TurboJpeg | None:
    """The system's libturbojpeg, loaded once; None when there is none (or it lacks the API)."""
    global _turbo, _turbo_tried
    with _turbo_lock:
        if not _turbo_tried:
            _turbo_tried = True
            _turbo = _load_turbojpeg()
        return _turbo


def _load_turbojpeg() -> TurboJpeg | None:
    """The library named by DFSCAN_TURBOJPEG, else Debian's soname, else the loader's search
    (``find_library`` runs ``ldconfig``: only when the soname is not there)."""
    named = os.environ.get(TURBOJPEG_ENV)
    for path in [named] if named else ["libturbojpeg.so.0", None]:
        path = path or ctypes.util.find_library("turbojpeg")
        if not path:
            continue
        try:
            return TurboJpeg(ctypes.CDLL(path))
        except (OSError, AttributeError):  # not loadable, or an API without these calls
            continue
    return None


# --- PNG: rows up to the last needed one ----------------------------------------------------


def png_tail_is_plain(data: bytes) -> bool:
    """True when the chunks are whole and nothing but IDAT follows the first IDAT up to IEND.

    Pillow reads chunks after the image data (text, eXIf with an orientation, XMP) only when it
    has decoded every row; a file that has any is left to the full decode, so the orientation
    and everything else is read exactly as before.
    """
    pos, seen_idat = len(PNG_MAGIC), False
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            return False
        if kind == b"IEND":
            return seen_idat
        if kind == b"IDAT":
            seen_idat = True
        elif seen_idat:
            return False
        pos = end
    return False


def limit_png_rows(im: ImageFile.ImageFile, rows: int) -> bool:
    """Make a just-opened, non-interlaced PNG decode only its first ``rows`` rows on ``load()``.

    The image keeps its size; rows below stay unset. False (nothing changed) for anything but
    the single full-size ``zip`` tile of a plain PNG.
    """
    tiles = getattr(im, "tile", None)
    if im.format != "PNG" or im.info.get("interlace") or not tiles or len(tiles) != 1:
        return False
    tile = tiles[0]
    if tile[0] != "zip" or tuple(tile[1]) != (0, 0, *im.size) or not hasattr(tile, "_replace"):
        return False
    if rows < im.size[1]:
        im.tile = [tile._replace(extents=(0, 0, im.size[0], rows))]
    return True

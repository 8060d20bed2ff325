"""The containers, walked without decoding pixels: PNG chunks, JPEG segments, WebP (RIFF)
chunks, and anything else through Pillow's lazy open. Each reader hands the metadata it finds
to :mod:`dfscan.scanner.provenance.metadata` and says whether a C2PA manifest is present."""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

from .hints import READ_MAX_BYTES, Provenance, Source
from .metadata import (
    exif_fields,
    png_text,
    png_tools,
    read_exif,
    read_xmp,
)

_MAX_CHUNKS = 100_000  # PNG chunks / JPEG segments / RIFF chunks walked per file
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(src: Source, prov: Provenance) -> bool:
    f = src.f
    f.seek(8)
    texts: dict[str, str] = {}
    has_c2pa = False
    for _ in range(_MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            if header:
                prov.note("PNG: cut inside a chunk header")
            break
        length, ctype = struct.unpack(">I4s", header)
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            data = src.read_capped(length, f"PNG {ctype.decode()} chunk", prov)
            parsed = png_text(ctype, data, prov)
            if parsed is not None:
                key, value = parsed
                if key == "XML:com.adobe.xmp":
                    read_xmp(value.encode("utf-8", "surrogateescape"), prov)
                else:
                    texts.setdefault(key, value)
            f.seek(4, io.SEEK_CUR)  # CRC
        elif ctype == b"eXIf":
            read_exif(src.read_capped(length, "PNG eXIf chunk", prov), prov)
            f.seek(4, io.SEEK_CUR)
        elif ctype == b"caBX":
            has_c2pa = True
            f.seek(length + 4, io.SEEK_CUR)
        elif ctype == b"IEND":
            break
        else:
            f.seek(length + 4, io.SEEK_CUR)  # IDAT and the rest: skipped, not decoded
    if texts:
        png_tools(texts, prov)
    return has_c2pa


def read_jpeg(src: Source, prov: Provenance) -> bool:
    f = src.f
    f.seek(2)
    has_c2pa = False
    for _ in range(_MAX_CHUNKS):
        marker = f.read(2)
        if len(marker) < 2:
            prov.note("JPEG: file ends before the image data")
            break
        if marker[0] != 0xFF:
            prov.note("JPEG: malformed segment marker")
            break
        code = marker[1]
        if code == 0xFF:  # fill byte
            f.seek(-1, io.SEEK_CUR)
            continue
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
            continue
        if code in (0xDA, 0xD9):  # start of scan / end: the metadata is before it
            break
        (length,) = struct.unpack(">H", f.read(2))
        if length < 2:
            prov.note("JPEG: malformed segment length")
            break
        body = length - 2
        if code == 0xE1:  # APP1: EXIF or XMP
            data = src.read_capped(body, "JPEG APP1 segment", prov)
            if data.startswith(b"Exif\x00\x00"):
                read_exif(data[6:], prov)
            elif data.startswith(_JPEG_XMP):
                read_xmp(data[len(_JPEG_XMP) :], prov)
        elif code == 0xEB:  # APP11: JUMBF, where C2PA lives
            data = f.read(min(body, 64))
            has_c2pa = has_c2pa or b"c2pa" in data
            f.seek(body - len(data), io.SEEK_CUR)
        else:
            f.seek(body, io.SEEK_CUR)
    return has_c2pa


def read_webp(src: Source, prov: Provenance) -> bool:
    f = src.f
    f.seek(12)
    has_c2pa = False
    for _ in range(_MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            break
        ctype, length = struct.unpack("<4sI", header)
        padded = length + (length & 1)
        if ctype == b"EXIF":
            data = src.read_capped(length, "WebP EXIF chunk", prov)
            read_exif(data[6:] if data.startswith(b"Exif\x00\x00") else data, prov)
            f.seek(padded - length, io.SEEK_CUR)
        elif ctype == b"XMP ":
            read_xmp(src.read_capped(length, "WebP XMP chunk", prov), prov)
            f.seek(padded - length, io.SEEK_CUR)
        else:
            has_c2pa = has_c2pa or ctype == b"C2PA"
            f.seek(padded, io.SEEK_CUR)
    return has_c2pa


def read_other(path: BinaryIO, prov: Provenance) -> bool:
    """GIF, TIFF, BMP…: EXIF and XMP through Pillow's lazy open (headers only, no pixels)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            xmp = im.info.get("xmp")
    except Exception as exc:  # Pillow raises many types on bad files; the scan reports those
        prov.note(f"metadata not readable: {type(exc).__name__}")
        return False
    if exif:
        exif_fields(exif, prov)
    if isinstance(xmp, (bytes, str)):
        read_xmp(xmp.encode() if isinstance(xmp, str) else xmp[:READ_MAX_BYTES], prov)
    return False

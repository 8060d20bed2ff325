"""What an image file declares about how it was made, read from its headers and chunks only.

A reader beside decoding: it never decodes pixels and never changes a score. For each file it
looks at

- **C2PA** manifests (JUMBF in JPEG APP11, PNG ``caBX``, WebP ``C2PA`` chunks), read and validated
  by ``c2pa-python`` (the optional ``[provenance]`` extra) without fetching anything: the claim
  generator, the actions' ``digitalSourceType`` and the validation state. Without the extra,
  a manifest is still noticed (``c2pa:manifest``, with a note saying what to install);
- **XMP** ``Iptc4xmpExt:DigitalSourceType`` (and ``xmp:CreatorTool``) in JPEG, PNG and WebP;
- **PNG text chunks** that generation front-ends write: A1111/Forge ``parameters``, ComfyUI
  ``prompt``/``workflow``, NovelAI, InvokeAI, Fooocus;
- **EXIF** Software / ImageDescription / UserComment (and PNG ``Software``-like text) naming a
  generator from :data:`GENERATOR_NAMES`, the one table of known strings.

The result is a short ``label`` (tags separated by ``"; "``, strongest source first, such as
``c2pa:trainedAlgorithmicMedia``, ``png:comfyui``, ``xmp:trainedAlgorithmicMedia``,
``exif:Midjourney``; None when nothing is declared) and a compact JSON ``detail`` capped at
:data:`DETAIL_MAX_CHARS`. Bad metadata is normal input: a truncated manifest, a huge text
chunk, invalid XML or binary garbage becomes a note in the detail, never an exception and never
a lost row. Text chunks and XMP are read up to :data:`READ_MAX_BYTES` each, compressed ones
decompressed up to the same size.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from .c2pa import c2pa_available, read_c2pa
from .formats import (
    PNG_SIGNATURE,
    read_jpeg,
    read_other,
    read_png,
    read_webp,
)
from .hints import (
    CAPTURED_SOURCE_TYPES,
    DETAIL_MAX_CHARS,
    GENERATED_SOURCE_TYPES,
    GENERATOR_NAMES,
    PNG_TOOLS,
    READ_MAX_BYTES,
    TAG_SEPARATOR,
    Declared,
    Provenance,
    Source,
    declared,
    generator_named,
    tags_of,
)

__all__ = [
    "CAPTURED_SOURCE_TYPES",
    "DETAIL_MAX_CHARS",
    "GENERATED_SOURCE_TYPES",
    "GENERATOR_NAMES",
    "PNG_TOOLS",
    "READ_MAX_BYTES",
    "TAG_SEPARATOR",
    "Declared",
    "Provenance",
    "c2pa_available",
    "declared",
    "generator_named",
    "read_provenance",
    "tags_of",
]


def read_provenance(source: str | Path | BinaryIO, c2pa: bool = True) -> Provenance:
    """Everything ``source`` (a path, or a seekable binary file such as ``io.BytesIO``)
    declares about its origin; never raises for bad metadata.

    ``c2pa``: validate C2PA manifests with c2pa-python when it is installed.
    """
    prov = Provenance()
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as f:
                _read_all(f, prov, c2pa)
        except OSError as exc:
            prov.note(f"could not read metadata: {exc.strerror or exc}")
        return prov
    _read_all(source, prov, c2pa)
    return prov


def _read_all(f: BinaryIO, prov: Provenance, c2pa: bool) -> None:
    has_c2pa, kind = False, ""
    try:
        head = f.read(16)
        f.seek(0)
        src = Source(f)
        if head.startswith(PNG_SIGNATURE):
            kind, has_c2pa = "image/png", read_png(src, prov)
        elif head.startswith(b"\xff\xd8"):
            kind, has_c2pa = "image/jpeg", read_jpeg(src, prov)
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind, has_c2pa = "image/webp", read_webp(src, prov)
        else:
            f.seek(0)
            read_other(f, prov)
    except OSError as exc:
        prov.note(f"could not read metadata: {exc.strerror or exc}")
        return
    except (EOFError, ValueError, struct.error) as exc:
        prov.note(f"metadata cut short or malformed: {exc}")
    if has_c2pa:
        f.seek(0)
        read_c2pa(f, kind, prov, c2pa)

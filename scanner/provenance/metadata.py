"""The metadata fields that declare an origin: EXIF text tags, XMP ``DigitalSourceType`` and
``CreatorTool``, and PNG text chunks of generation front-ends. Each reader tags a
:class:`~dfscan.scanner.provenance.hints.Provenance` and notes what it could not read."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zlib
from typing import Any

from .hints import (
    CAPTURED_SOURCE_TYPES,
    GENERATED_SOURCE_TYPES,
    READ_MAX_BYTES,
    Provenance,
    clean_text,
    generator_named,
    snippet,
)

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_EXIF_TAGS = {0x0131: "Software", 0x010E: "ImageDescription"}
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def png_text(ctype: bytes, data: bytes, prov: Provenance) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk; None (with a note) if it is malformed."""
    key, sep, rest = data.partition(b"\x00")
    if not sep or not key:
        prov.note(f"PNG {ctype.decode()} chunk without a keyword")
        return None
    keyword = clean_text(key)[:80]
    try:
        if ctype == b"tEXt":
            return keyword, rest.decode("latin-1")
        if ctype == b"zTXt":
            return keyword, _inflate(rest[1:], prov, keyword).decode("latin-1")
        # iTXt: compression flag, method, language\0, translated keyword\0, text
        flag, body = rest[:1], rest[2:]
        _lang, _, body = body.partition(b"\x00")
        _translated, _, body = body.partition(b"\x00")
        if flag == b"\x01":
            body = _inflate(body, prov, keyword)
        return keyword, body.decode("utf-8", "replace")
    except zlib.error as exc:
        prov.note(f"PNG text {keyword!r}: cannot decompress ({exc})")
        return None


def _inflate(data: bytes, prov: Provenance, keyword: str) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, READ_MAX_BYTES)
    if d.unconsumed_tail:
        prov.note(f"PNG text {keyword!r}: decompresses past {READ_MAX_BYTES} bytes, kept the start")
    return out


def png_tools(texts: dict[str, str], prov: Provenance) -> None:
    """Tag the generation front-end whose text chunks these are."""
    keys = set(texts)
    params = texts.get("parameters", "")
    software = texts.get("Software", "")
    found: dict[str, Any] = {"keys": sorted(keys)[:30]}
    if "fooocus_scheme" in keys or "fooocus" in params[:2000].lower():
        tool = "fooocus"
    elif keys & {"invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"}:
        tool = "invokeai"
    elif "novelai" in software.lower() or "novelai" in texts.get("Source", "").lower():
        tool = "novelai"
    elif keys & {"prompt", "workflow"} and _looks_like_json(
        texts.get("prompt") or texts.get("workflow", "")
    ):
        tool = "comfyui"
    elif params:
        tool = "a1111"
    else:
        tool = None
    if tool is not None:
        prov.tag(f"png:{tool}")
        found["tool"] = tool
        sample = params or texts.get("Description") or texts.get("prompt") or ""
        if sample:
            found["text"] = snippet(clean_text(sample.encode("utf-8", "replace")))
    for key in ("Software", "Source", "Comment", "Description", "Author"):
        value = texts.get(key)
        if value and tool is None:
            name = generator_named(value)
            if name is not None:
                prov.tag(f"png:{name}")
                found[key] = snippet(clean_text(value.encode("utf-8", "replace")))
    if "tool" in found or len(found) > 1:
        prov.detail["png"] = found


def _looks_like_json(text: str) -> bool:
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def read_exif(data: bytes, prov: Provenance) -> None:
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception as exc:  # Pillow's TIFF parser raises many types on garbage
        prov.note(f"EXIF not readable: {type(exc).__name__}")
        return
    exif_fields(exif, prov)


def exif_fields(exif: Any, prov: Provenance) -> None:
    fields: dict[str, str] = {}
    try:
        for tag, name in _EXIF_TAGS.items():
            value = exif.get(tag)
            if value is not None:
                fields[name] = _exif_text(value)
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if comment is not None:
            fields["UserComment"] = _exif_text(comment, user_comment=True)
    except Exception as exc:  # a broken IFD pointer and the like
        prov.note(f"EXIF not readable: {type(exc).__name__}")
    found = {}
    for name, value in fields.items():
        generator = generator_named(value) if value else None
        if generator is not None:
            prov.tag(f"exif:{generator}")
            found[name] = snippet(value)
    if found:
        prov.detail["exif"] = found


def _exif_text(value: object, user_comment: bool = False) -> str:
    if isinstance(value, str):
        return clean_text(value.encode("utf-8", "replace"))
    if isinstance(value, bytes):
        data = value
        if user_comment and len(data) >= 8:
            charset, data = data[:8], data[8:]
            if charset.startswith(b"UNICODE"):
                for codec in ("utf-16-be", "utf-16-le"):
                    try:
                        return clean_text(data.decode(codec).encode())
                    except UnicodeDecodeError:
                        continue
        return clean_text(data[:READ_MAX_BYTES])
    return clean_text(str(value).encode())


_DST_ATTR = re.compile(rb"DigitalSourceType\s*=\s*[\"']([^\"']{1,300})[\"']")
_DST_ELEM = re.compile(rb"DigitalSourceType[^>]*>\s*([^<\s]{1,300})\s*<")


def read_xmp(data: bytes, prov: Provenance) -> None:
    """DigitalSourceType and CreatorTool of an XMP packet; malformed XML falls back to a scan
    of the raw text for DigitalSourceType."""
    source_type = creator = None
    try:
        root = ET.fromstring(data.strip(b"\x00 \r\n\t"))
    except (ET.ParseError, ValueError) as exc:
        prov.note(f"invalid XMP: {exc}")
        match = _DST_ATTR.search(data) or _DST_ELEM.search(data)
        source_type = clean_text(match.group(1)) if match else None
    else:
        dst, tool = f"{{{IPTC_EXT_NS}}}DigitalSourceType", f"{{{XMP_NS}}}CreatorTool"
        for el in root.iter():
            if source_type is None:
                source_type = el.attrib.get(dst)
                if source_type is None and el.tag == dst:
                    source_type = (el.text or "").strip() or el.attrib.get(f"{{{RDF_NS}}}resource")
            if creator is None:
                creator = el.attrib.get(tool)
                if creator is None and el.tag == tool:
                    creator = (el.text or "").strip() or None
    found: dict[str, str] = {}
    if source_type:
        short = source_type.rstrip("/").rsplit("/", 1)[-1]
        found["digital_source_type"] = snippet(source_type)
        if short in GENERATED_SOURCE_TYPES | CAPTURED_SOURCE_TYPES:
            prov.tag(f"xmp:{short}")
        else:
            prov.tag(f"xmp:{short[:60]}")
    if creator:
        name = generator_named(creator)
        found["creator_tool"] = snippet(clean_text(creator.encode("utf-8", "replace")))
        if name is not None:
            prov.tag(f"xmp:{name}")
    if found:
        prov.detail["xmp"] = found

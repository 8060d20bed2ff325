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

import io
import json
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from dfscan.scanner.errors import first_line

READ_MAX_BYTES = 1 << 20  # per text chunk / XMP packet / EXIF block
DETAIL_MAX_CHARS = 2000  # provenance_detail in the report
_SNIPPET = 300  # characters of a free-text value kept in the detail
_MAX_CHUNKS = 100_000  # PNG chunks / JPEG segments / RIFF chunks walked per file

# Known generator names in EXIF/XMP/PNG text fields, matched case-insensitively as substrings.
# (substring, name in the label). Extend here; the first match wins.
GENERATOR_NAMES: tuple[tuple[str, str], ...] = (
    ("adobe firefly", "Adobe Firefly"),
    ("firefly", "Adobe Firefly"),
    ("novelai", "NovelAI"),
    ("midjourney", "Midjourney"),
    ("dall-e", "DALL-E"),
    ("dall·e", "DALL-E"),
    ("dalle", "DALL-E"),
    ("stable diffusion", "Stable Diffusion"),
    ("stablediffusion", "Stable Diffusion"),
    ("stability.ai", "Stable Diffusion"),
    ("automatic1111", "A1111"),
    ("comfyui", "ComfyUI"),
    ("invokeai", "InvokeAI"),
    ("fooocus", "Fooocus"),
    ("leonardo.ai", "Leonardo"),
    ("leonardo ai", "Leonardo"),
    ("ideogram", "Ideogram"),
    ("flux.1", "FLUX"),
    ("black forest labs", "FLUX"),
    ("imagen", "Imagen"),
    ("bing image creator", "Bing Image Creator"),
    ("dreamstudio", "DreamStudio"),
    ("nightcafe", "NightCafe"),
    ("craiyon", "Craiyon"),
    ("playground ai", "Playground"),
)

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/...)
GENERATED_SOURCE_TYPES = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia"}
)
CAPTURED_SOURCE_TYPES = frozenset({"digitalCapture", "negativeFilm", "positiveFilm", "print"})
PNG_TOOLS = frozenset({"a1111", "comfyui", "novelai", "invokeai", "fooocus"})

IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_TAGS = {0x0131: "Software", 0x010E: "ImageDescription"}
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286

Declared = Literal["generated", "captured"]


@dataclass
class Provenance:
    """What one file declares: tags for the ``provenance`` column, details for the other."""

    tags: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tag(self, tag: str) -> None:
        if tag not in self.tags:
            self.tags.append(tag)

    def note(self, text: str) -> None:
        if len(self.notes) < 10:
            self.notes.append(text[:_SNIPPET])

    @property
    def label(self) -> str | None:
        """The tags, strongest source first (signed manifest, XMP, PNG text, EXIF)."""
        return TAG_SEPARATOR.join(sorted(self.tags, key=_tag_rank)) or None

    def detail_json(self) -> str | None:
        """The detail (with notes) as compact JSON of at most ``DETAIL_MAX_CHARS`` characters."""
        detail = dict(self.detail)
        if self.notes:
            detail["notes"] = self.notes
        if not detail:
            return None
        return _capped(detail)


_TAG_ORDER = ("c2pa:", "xmp:", "png:", "exif:")
TAG_SEPARATOR = "; "  # between the tags of one label (names such as "Adobe Firefly" have spaces)


def tags_of(label: str | None) -> list[tuple[str, str]]:
    """(source, value) of each tag of a ``provenance`` label."""
    out = []
    for tag in (label or "").split(TAG_SEPARATOR.strip()):
        source, sep, value = tag.strip().partition(":")
        if sep:
            out.append((source, value))
    return out


def _tag_rank(tag: str) -> int:
    return next((i for i, p in enumerate(_TAG_ORDER) if tag.startswith(p)), len(_TAG_ORDER))


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _capped(detail: dict[str, Any]) -> str:
    text = _compact(detail)
    for limit in (_SNIPPET, 80, 20):
        if len(text) <= DETAIL_MAX_CHARS:
            return text
        detail = _shorten(detail, limit)
        text = _compact(detail)
    if len(text) <= DETAIL_MAX_CHARS:
        return text
    return _compact({"truncated": True, "keys": [str(k)[:40] for k in list(detail)[:20]]})


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if isinstance(value, dict):
        return {str(k)[:limit]: _shorten(v, limit) for k, v in list(value.items())[:limit]}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value[:limit]]
    return value


def _text(data: bytes) -> str:
    """Bytes from a metadata field as text: UTF-8, else Latin-1; control characters dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return "".join(c for c in text if c.isprintable() or c in "\n\t").strip()


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


def generator_named(text: str) -> str | None:
    """The generator a free-text field names, from :data:`GENERATOR_NAMES`; None if none."""
    lower = text.lower()
    for needle, name in GENERATOR_NAMES:
        if needle in lower:
            return name
    return None


def declared(label: str | None) -> Declared | None:
    """What a ``provenance`` label declares: generated, captured, or nothing (None).

    Any tag declaring generation wins over one declaring capture.
    """
    tags = tags_of(label)
    values = {value for _, value in tags}
    kinds = {source for source, _ in tags}
    generator_values = {name for _, name in GENERATOR_NAMES}
    if values & GENERATED_SOURCE_TYPES or values & generator_values:
        return "generated"
    if "png" in kinds and values & PNG_TOOLS:
        return "generated"
    if values & CAPTURED_SOURCE_TYPES:
        return "captured"
    return None


# --- the readers ------------------------------------------------------------------------------


class _Source:
    """The open file, with bounded reads."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def read_capped(self, length: int, what: str, prov: Provenance) -> bytes:
        """``length`` bytes from here, or the first READ_MAX_BYTES of them (noted); skips the
        rest so the caller stays in step with the file's structure."""
        keep = min(length, READ_MAX_BYTES)
        data = self.f.read(keep)
        if length > keep:
            prov.note(f"{what}: {length} bytes, read the first {keep}")
            self.f.seek(length - keep, io.SEEK_CUR)
        if len(data) < keep:
            raise EOFError(f"{what}: file ends inside it")
        return data


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
        src = _Source(f)
        if head.startswith(_PNG_SIGNATURE):
            kind, has_c2pa = "image/png", _read_png(src, prov)
        elif head.startswith(b"\xff\xd8"):
            kind, has_c2pa = "image/jpeg", _read_jpeg(src, prov)
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            kind, has_c2pa = "image/webp", _read_webp(src, prov)
        else:
            f.seek(0)
            _read_other(f, prov)
    except OSError as exc:
        prov.note(f"could not read metadata: {exc.strerror or exc}")
        return
    except (EOFError, ValueError, struct.error) as exc:
        prov.note(f"metadata cut short or malformed: {exc}")
    if has_c2pa:
        f.seek(0)
        _read_c2pa(f, kind, prov, c2pa)


def _read_png(src: _Source, prov: Provenance) -> bool:
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
            parsed = _png_text(ctype, data, prov)
            if parsed is not None:
                key, value = parsed
                if key == "XML:com.adobe.xmp":
                    _read_xmp(value.encode("utf-8", "surrogateescape"), prov)
                else:
                    texts.setdefault(key, value)
            f.seek(4, io.SEEK_CUR)  # CRC
        elif ctype == b"eXIf":
            _read_exif(src.read_capped(length, "PNG eXIf chunk", prov), prov)
            f.seek(4, io.SEEK_CUR)
        elif ctype == b"caBX":
            has_c2pa = True
            f.seek(length + 4, io.SEEK_CUR)
        elif ctype == b"IEND":
            break
        else:
            f.seek(length + 4, io.SEEK_CUR)  # IDAT and the rest: skipped, not decoded
    if texts:
        _png_tools(texts, prov)
    return has_c2pa


def _png_text(ctype: bytes, data: bytes, prov: Provenance) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk; None (with a note) if it is malformed."""
    key, sep, rest = data.partition(b"\x00")
    if not sep or not key:
        prov.note(f"PNG {ctype.decode()} chunk without a keyword")
        return None
    keyword = _text(key)[:80]
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


def _png_tools(texts: dict[str, str], prov: Provenance) -> None:
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
            found["text"] = _snippet(_text(sample.encode("utf-8", "replace")))
    for key in ("Software", "Source", "Comment", "Description", "Author"):
        value = texts.get(key)
        if value and tool is None:
            name = generator_named(value)
            if name is not None:
                prov.tag(f"png:{name}")
                found[key] = _snippet(_text(value.encode("utf-8", "replace")))
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


def _read_jpeg(src: _Source, prov: Provenance) -> bool:
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
                _read_exif(data[6:], prov)
            elif data.startswith(_JPEG_XMP):
                _read_xmp(data[len(_JPEG_XMP) :], prov)
        elif code == 0xEB:  # APP11: JUMBF, where C2PA lives
            data = f.read(min(body, 64))
            has_c2pa = has_c2pa or b"c2pa" in data
            f.seek(body - len(data), io.SEEK_CUR)
        else:
            f.seek(body, io.SEEK_CUR)
    return has_c2pa


def _read_webp(src: _Source, prov: Provenance) -> bool:
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
            _read_exif(data[6:] if data.startswith(b"Exif\x00\x00") else data, prov)
            f.seek(padded - length, io.SEEK_CUR)
        elif ctype == b"XMP ":
            _read_xmp(src.read_capped(length, "WebP XMP chunk", prov), prov)
            f.seek(padded - length, io.SEEK_CUR)
        else:
            has_c2pa = has_c2pa or ctype == b"C2PA"
            f.seek(padded, io.SEEK_CUR)
    return has_c2pa


def _read_other(path: BinaryIO, prov: Provenance) -> bool:
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
        _exif_fields(exif, prov)
    if isinstance(xmp, (bytes, str)):
        _read_xmp(xmp.encode() if isinstance(xmp, str) else xmp[:READ_MAX_BYTES], prov)
    return False


def _read_exif(data: bytes, prov: Provenance) -> None:
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception as exc:  # Pillow's TIFF parser raises many types on garbage
        prov.note(f"EXIF not readable: {type(exc).__name__}")
        return
    _exif_fields(exif, prov)


def _exif_fields(exif: Any, prov: Provenance) -> None:
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
            found[name] = _snippet(value)
    if found:
        prov.detail["exif"] = found


def _exif_text(value: object, user_comment: bool = False) -> str:
    if isinstance(value, str):
        return _text(value.encode("utf-8", "replace"))
    if isinstance(value, bytes):
        data = value
        if user_comment and len(data) >= 8:
            charset, data = data[:8], data[8:]
            if charset.startswith(b"UNICODE"):
                for codec in ("utf-16-be", "utf-16-le"):
                    try:
                        return _text(data.decode(codec).encode())
                    except UnicodeDecodeError:
                        continue
        return _text(data[:READ_MAX_BYTES])
    return _text(str(value).encode())


_DST_ATTR = re.compile(rb"DigitalSourceType\s*=\s*[\"']([^\"']{1,300})[\"']")
_DST_ELEM = re.compile(rb"DigitalSourceType[^>]*>\s*([^<\s]{1,300})\s*<")


def _read_xmp(data: bytes, prov: Provenance) -> None:
    """DigitalSourceType and CreatorTool of an XMP packet; malformed XML falls back to a scan
    of the raw text for DigitalSourceType."""
    source_type = creator = None
    try:
        root = ET.fromstring(data.strip(b"\x00 \r\n\t"))
    except (ET.ParseError, ValueError) as exc:
        prov.note(f"invalid XMP: {exc}")
        match = _DST_ATTR.search(data) or _DST_ELEM.search(data)
        source_type = _text(match.group(1)) if match else None
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
        found["digital_source_type"] = _snippet(source_type)
        if short in GENERATED_SOURCE_TYPES | CAPTURED_SOURCE_TYPES:
            prov.tag(f"xmp:{short}")
        else:
            prov.tag(f"xmp:{short[:60]}")
    if creator:
        name = generator_named(creator)
        found["creator_tool"] = _snippet(_text(creator.encode("utf-8", "replace")))
        if name is not None:
            prov.tag(f"xmp:{name}")
    if found:
        prov.detail["xmp"] = found


# --- C2PA ---------------------------------------------------------------------------------------

_C2PA_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_c2pa_context: Any = None


def c2pa_available() -> bool:
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return False
    return True


def _context() -> Any:
    global _c2pa_context
    if _c2pa_context is None:
        import c2pa

        _c2pa_context = c2pa.Context.from_dict(_C2PA_SETTINGS)
    return _c2pa_context


def _read_c2pa(f: BinaryIO, kind: str, prov: Provenance, enabled: bool) -> None:
    """Read and validate the manifest store (offline: no remote manifests, no OCSP)."""
    info: dict[str, Any] = {}
    prov.detail["c2pa"] = info
    if not enabled or not c2pa_available():
        prov.tag("c2pa:manifest")
        info["read"] = False
        if enabled:
            prov.note('C2PA manifest not read: pip install "dfscan[provenance]"')
        return
    import c2pa

    try:
        with c2pa.Reader(kind or None, f, None, _context()) as reader:
            state = reader.get_validation_state()
            manifest = reader.get_active_manifest() or {}
            status = json.loads(reader.json()).get("validation_status") or []
    except (c2pa.C2paError, OSError, ValueError) as exc:
        prov.tag("c2pa:unreadable")
        prov.note(f"C2PA manifest not readable: {first_line(exc, 200)}")
        return
    info["validation_state"] = state
    codes = [s.get("code") for s in status if isinstance(s, dict)][:10]
    if codes:
        info["validation_codes"] = codes
    generator = _claim_generator(manifest)
    if generator:
        info["claim_generator"] = _snippet(generator)
    types = _source_types(manifest)
    if types:
        info["digital_source_types"] = types
    generated = [t for t in types if t in GENERATED_SOURCE_TYPES]
    tag = generated[0] if generated else (types[0] if types else "manifest")
    prov.tag(f"c2pa:{tag}")


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    text = manifest.get("claim_generator")
    if isinstance(text, str):
        return text
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list):
        parts = []
        for item in infos[:3]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                version = item.get("version")
                parts.append(item["name"] + (f"/{version}" if isinstance(version, str) else ""))
        return " ".join(parts) or None
    return None


def _source_types(manifest: dict[str, Any]) -> list[str]:
    """Short digitalSourceType names of the manifest's actions, in order, once each."""
    out: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data = assertion.get("data")
        actions = data.get("actions") if isinstance(data, dict) else None
        for action in actions if isinstance(actions, list) else []:
            value = action.get("digitalSourceType") if isinstance(action, dict) else None
            if isinstance(value, str):
                short = value.rstrip("/").rsplit("/", 1)[-1][:60]
                if short not in out:
                    out.append(short)
    return out

"""What an image declares, as tags: the vocabulary (known generators, IPTC source types),
the :class:`Provenance` a reader fills, and what a ``provenance`` label declares.

Shared by every reader (:mod:`dfscan.scanner.provenance.formats`, ``provenance_metadata``,
``provenance_c2pa``) and by the tallies and the report, which only read labels.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

READ_MAX_BYTES = 1 << 20  # per text chunk / XMP packet / EXIF block
DETAIL_MAX_CHARS = 2000  # provenance_detail in the report
_SNIPPET = 300  # characters of a free-text value kept in the detail

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


def clean_text(data: bytes) -> str:
    """Bytes from a metadata field as text: UTF-8, else Latin-1; control characters dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return "".join(c for c in text if c.isprintable() or c in "\n\t").strip()


def snippet(text: str) -> str:
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


class Source:
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

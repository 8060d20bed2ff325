"""Read and rewrite an .onnx file's ``metadata_props`` without the onnx package.

An ONNX file is one serialised ``ModelProto``. Its top level is a protobuf message: a sequence
of fields, each a tag (``field_number << 3 | wire_type``, a varint) followed by its payload.
``metadata_props`` is field 14, repeated, each entry a ``StringStringEntryProto`` with ``key``
(field 1) and ``value`` (field 2), both strings.

:func:`replace_props` walks the top-level fields only: every field other than the entries it
replaces (the graph, the opsets, the other metadata entries, fields unknown to this code) is
copied byte for byte, in its place. The graph is never parsed, so a model of any size and any
opset is rewritten exactly and the scanner stays free of the onnx package (and of protobuf's
generated ONNX classes, which onnxruntime does not ship).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..errors import ModelError

METADATA_PROPS = 14  # ModelProto.metadata_props
_KEY, _VALUE = 1, 2  # StringStringEntryProto.key, .value

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # the wire types ONNX uses (groups, 3/4, are obsolete)


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message at this level."""


@dataclass(frozen=True, slots=True)
class Field:
    """One top-level field: its number, its wire type, and where it lies in the buffer."""

    number: int
    wire_type: int
    start: int  # first byte of the tag
    payload: int  # first byte of the payload (after the tag and, for _LEN, the length)
    end: int  # one past the last byte


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            raise WireError("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def fields(data: bytes | memoryview) -> Iterator[Field]:
    """The fields of one message, in file order; ``WireError`` on malformed bytes."""
    pos, size = 0, len(data)
    while pos < size:
        start = pos
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {start}")
        if wire_type == _VARINT:
            _, end = _varint(data, pos)
            payload = pos
        elif wire_type == _I64:
            payload, end = pos, pos + 8
        elif wire_type == _I32:
            payload, end = pos, pos + 4
        elif wire_type == _LEN:
            length, payload = _varint(data, pos)
            end = payload + length
        else:
            raise WireError(f"unsupported wire type {wire_type} at byte {start}")
        if end > size:
            raise WireError(f"field {number} at byte {start} runs past the end")
        yield Field(number, wire_type, start, payload, end)
        pos = end


def _entry(data: memoryview, f: Field) -> tuple[str, str]:
    """(key, value) of one metadata_props entry."""
    if f.wire_type != _LEN:
        raise WireError(f"metadata_props entry at byte {f.start} is not a message")
    key = value = ""
    body = data[f.payload : f.end]
    for sub in fields(body):
        if sub.number in (_KEY, _VALUE):
            if sub.wire_type != _LEN:
                raise WireError("a metadata_props key or value is not a string")
            text = bytes(body[sub.payload : sub.end]).decode("utf-8")
            if sub.number == _KEY:
                key = text
            else:
                value = text
    return key, value


def encode_entry(key: str, value: str) -> bytes:
    """One ``metadata_props`` field (tag included): the entry as onnx itself serialises it."""
    body = bytearray()
    for number, text in ((_KEY, key), (_VALUE, value)):
        raw = text.encode("utf-8")
        body += encode_varint(number << 3 | _LEN) + encode_varint(len(raw)) + raw
    return encode_varint(METADATA_PROPS << 3 | _LEN) + encode_varint(len(body)) + bytes(body)


def _parse(data: bytes, source: str) -> list[Field]:
    try:
        return list(fields(memoryview(data)))
    except WireError as exc:
        raise ModelError(f"{source} is not a readable ONNX file ({exc})") from None


def read_props(data: bytes, source: str = "model") -> dict[str, str]:
    """The ``metadata_props`` of a serialised ModelProto, as ``onnx`` would list them (a later
    entry with the same key wins, as in ONNX Runtime's map)."""
    view = memoryview(data)
    props: dict[str, str] = {}
    try:
        for f in _parse(data, source):
            if f.number == METADATA_PROPS:
                key, value = _entry(view, f)
                props[key] = value
    except (WireError, UnicodeDecodeError) as exc:
        raise ModelError(f"{source}: unreadable metadata_props ({exc})") from None
    return props


def replace_props(data: bytes, updates: Mapping[str, str | None], source: str = "model") -> bytes:
    """``data`` with the ``metadata_props`` entries named in ``updates`` set (``None``: removed).

    An entry whose key is updated is rewritten where its first occurrence stood (later
    duplicates are dropped); keys not present yet are appended at the end of the message
    (protobuf allows fields in any order; onnx appends there too). Every other byte is copied
    as it was.
    """
    view = memoryview(data)
    out = bytearray()
    written: set[str] = set()
    try:
        for f in _parse(data, source):
            if f.number == METADATA_PROPS:
                key, _ = _entry(view, f)
                if key in updates:
                    new = updates[key]
                    if key not in written and new is not None:
                        out += encode_entry(key, new)
                    written.add(key)
                    continue
            out += view[f.start : f.end]
    except (WireError, UnicodeDecodeError) as exc:
        raise ModelError(f"{source}: unreadable metadata_props ({exc})") from None
    for key, new in updates.items():
        if key not in written and new is not None:
            out += encode_entry(key, new)
    return bytes(out)

"""Reading a request's images into memory: a raw image body, or multipart parts.

The body is read as it streams in, counted against the limits as it comes (a Content-Length
over the limit is refused before any byte is read), and parsed by python-multipart's push
parser straight into bytes: no part is spooled to a temporary file, unlike a framework's
form parsing, which writes parts over 1 MiB to disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .limits import Limits
from .service import Upload

RAW_TYPES = ("image/", "application/octet-stream")
RAW_NAME = "image"


class UploadError(Exception):
    """The request cannot be read as images: answered with ``status`` and a JSON error."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def too_large(limits: Limits) -> UploadError:
    return UploadError(
        413,
        "body_too_large",
        f"request body over this server's limit of {limits.max_body_bytes:,} bytes "
        "(--max-body-mb); send fewer or smaller images per request",
    )


def too_many(limits: Limits) -> UploadError:
    return UploadError(
        413,
        "too_many_files",
        f"more than {limits.max_files} files in one request (--max-files); split them",
    )


def kind_of(content_type: str | None) -> str:
    """``multipart``, ``raw`` or raise 415 for a body that is neither."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return "multipart"
    if not media or media.startswith(RAW_TYPES):
        return "raw"
    raise UploadError(
        415,
        "bad_request",
        f"unsupported content type {media!r}: send multipart/form-data (curl -F "
        "file=@photo.jpg) or a raw image body (Content-Type: image/jpeg, image/png, ... or "
        "application/octet-stream)",
    )


def check_length(header: str | None, limits: Limits) -> None:
    if header is None:
        return
    try:
        length = int(header)
    except ValueError:
        raise UploadError(400, "bad_request", "Content-Length is not a number") from None
    if length > limits.max_body_bytes:
        raise too_large(limits)


async def read_raw(
    stream: AsyncIterator[bytes], limits: Limits, name: str = RAW_NAME
) -> list[Upload]:
    parts: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise too_large(limits)
        parts.append(chunk)
    if size == 0:
        raise UploadError(
            400, "bad_request", "empty body: send an image (raw body or multipart files)"
        )
    return [Upload(name, b"".join(parts))]


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


def _disposition(value: bytes) -> dict[str, str]:
    """The parameters of a Content-Disposition header, given as its raw bytes: browsers send
    file names as UTF-8 bytes, which only a bytes-level parse keeps intact."""
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(value)
    return {k.decode("latin-1"): v.decode("utf-8", "replace") for k, v in params.items()}


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str, limits: Limits
) -> list[Upload]:
    """Every part with a file name is an image (named by it); other fields are ignored but
    count towards ``max_files``, so no request can make the parser keep unbounded parts."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart body without a boundary")
    parts: list[_Part] = []
    header_field, header_value = bytearray(), bytearray()

    def on_part_begin() -> None:
        if len(parts) >= limits.max_files:
            raise too_many(limits)
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        key = header_field.decode("latin-1").lower()
        parts[-1].headers[key] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
    }
    # python-multipart types its callbacks as a TypedDict of exact signatures; ours match at
    # run time (the tests parse real multipart bodies) but are declared as plain functions.
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    size = 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise too_large(limits)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from None
    uploads = []
    for part in parts:
        disposition = _disposition(part.headers.get("content-disposition", b""))
        if "filename" in disposition:
            name = disposition["filename"] or disposition.get("name") or RAW_NAME
            uploads.append(Upload(name, bytes(part.data)))
    if not uploads:
        raise UploadError(
            400,
            "bad_request",
            "no file in the multipart body: send images as file parts (curl -F file=@photo.jpg)",
        )
    return uploads

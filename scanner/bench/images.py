"""Images for ``dfscan bench`` when no folder is given: photo-like content, made offline.

Decoders' speed depends on content (entropy), so flat or random images would mislead: flat
ones compress to nothing, white noise to a file as large as the pixels. Natural photos have an
amplitude spectrum falling as ~1/f; these images are 1/f noise per channel (correlated across
channels like real colour) plus a little sensor-like noise, which gives JPEG files of a size
typical of photos (a few hundred KB at 1024², quality 90).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": (".jpg", {"quality": 90}),
    "png": (".png", {"compress_level": 1}),
}


def pink_noise_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 with a 1/f amplitude spectrum and correlated colour channels."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amplitude = (1.0 / f).astype(np.float32)
    amplitude[0, 0] = 0.0
    shared = rng.standard_normal((size, size // 2 + 1)) + 1j * rng.standard_normal(
        (size, size // 2 + 1)
    )
    channels = []
    for _ in range(3):
        own = rng.standard_normal(shared.shape) + 1j * rng.standard_normal(shared.shape)
        spectrum = amplitude * (0.8 * shared + 0.2 * own)
        channels.append(np.fft.irfft2(spectrum, s=(size, size)))
    img = np.stack(channels, axis=-1)
    img = (img - img.mean()) / (img.std() + 1e-8)
    img = 128 + 45 * img + rng.normal(0, 1.5, img.shape)  # + sensor-like noise
    return np.clip(img, 0, 255).astype(np.uint8)


def make_bench_images(root: Path, n: int, size: int = 1024, seed: int = 0) -> dict[str, Path]:
    """``n`` JPEGs in ``root/jpeg`` and ``n`` PNGs in ``root/png``; returns the two folders.

    Eight distinct fields are drawn and then flipped/rotated into ``n`` different pictures:
    generating every image from scratch would make the benchmark slow to start.
    """
    rng = np.random.default_rng(seed)
    bases = [pink_noise_image(size, rng) for _ in range(min(n, 8))]
    folders = {}
    for fmt, (ext, options) in FORMATS.items():
        folder = root / fmt
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.rot90(bases[i % len(bases)], k=(i // len(bases)) % 4)
            if (i // (4 * len(bases))) % 2:
                arr = arr[:, ::-1]
            Image.fromarray(np.ascontiguousarray(arr)).save(folder / f"{i:05d}{ext}", **options)
        folders[fmt] = folder
    return folders


def make_small_pngs(root: Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """``n`` small PNGs spread over 10 subfolders (a scan-memory test, not a speed one)."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    for i in range(n):
        folder = root / f"gen{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiles[i % 16]).save(folder / f"{i:06d}.png", compress_level=1)
    return root


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def with_declarations(src: Path, dst: Path) -> Path:
    """A copy of a bench PNG or JPEG that declares it was generated, as front-ends write it:
    ComfyUI ``prompt``/``workflow`` text chunks (a few KB of JSON) in a PNG; EXIF Software and
    an XMP DigitalSourceType packet in a JPEG. Bytes are inserted, pixels are not re-encoded."""
    import json
    import struct

    data = src.read_bytes()
    if data.startswith(b"\x89PNG"):
        graph = {str(i): {"class_type": "KSampler", "inputs": {"seed": i}} for i in range(60)}
        chunks = b"".join(
            _png_chunk(b"tEXt", key + b"\x00" + json.dumps(graph).encode())
            for key in (b"prompt", b"workflow")
        )
        end = data.rindex(b"IEND") - 4
        dst.write_bytes(data[:end] + chunks + data[end:])
        return dst
    exif = Image.Exif()
    exif[0x0131] = "Midjourney"
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmp'
        b'Ext/2008-02-29/" Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digital'
        b'sourcetype/trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
    )
    segments = b""
    for body in (b"Exif\x00\x00" + exif.tobytes(), b"http://ns.adobe.com/xap/1.0/\x00" + xmp):
        segments += b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    dst.write_bytes(data[:2] + segments + data[2:])
    return dst

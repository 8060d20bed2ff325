"""Image files that declare their origin, made in the test: PNG text chunks of each front-end,
XMP in JPEG/PNG/WebP, EXIF, a C2PA manifest signed with a certificate made on the spot, and
broken metadata of every kind."""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def pixels(value: int = 128, size: int = 24) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))


def png_with_text(path: Path, texts: dict[str, str], value: int = 128, zipped: bool = False):
    info = PngImagePlugin.PngInfo()
    for key, text in texts.items():
        if zipped:
            info.add_itxt(key, text, zip=True)
        else:
            info.add_text(key, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels(value).save(path, "PNG", pnginfo=info)
    return path


def chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def insert_before_iend(path: Path, *chunks: bytes) -> Path:
    """Add raw chunks at the end of a PNG (after IDAT), where some tools write their text."""
    data = path.read_bytes()
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + b"".join(chunks) + data[end:])
    return path


A1111 = (
    "a photo of a cat, masterpiece\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd_xl_base_1.0"
)
COMFY_PROMPT = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}}})
COMFY_WORKFLOW = json.dumps({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})
FRONT_ENDS: dict[str, dict[str, str]] = {
    "a1111": {"parameters": A1111},
    "comfyui": {"prompt": COMFY_PROMPT, "workflow": COMFY_WORKFLOW},
    "novelai": {
        "Title": "AI generated image",
        "Software": "NovelAI",
        "Source": "Stable Diffusion XL C1E1DE52",
        "Comment": json.dumps({"prompt": "a cat", "steps": 28, "sampler": "k_euler"}),
    },
    "invokeai": {"invokeai_metadata": json.dumps({"positive_prompt": "a cat", "steps": 30})},
    "fooocus": {
        "parameters": json.dumps({"Prompt": "a cat", "Version": "Fooocus v2.5.0"}),
        "fooocus_scheme": "fooocus",
    },
}


def xmp_packet(source_type: str | None = None, creator_tool: str | None = None) -> bytes:
    attrs = ""
    if source_type:
        attrs += f' Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"'
    if creator_tool:
        attrs += f' xmp:CreatorTool="{creator_tool}"'
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{attrs}/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def xmp_as_element(source_type: str) -> bytes:
    """The same statement written as an element with rdf:resource (another valid XMP form)."""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}{source_type}"/>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def save_with_xmp(path: Path, fmt: str, xmp: bytes, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "PNG":  # Pillow writes no XMP into PNGs: the iTXt chunk Adobe uses
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
        pixels(value).save(path, "PNG", pnginfo=info)
    else:
        pixels(value).save(path, fmt, xmp=xmp)
    return path


def save_with_exif(
    path: Path,
    software: str | None = None,
    description: str | None = None,
    user_comment: bytes | None = None,
    fmt: str = "JPEG",
    value: int = 128,
) -> Path:
    exif = Image.Exif()
    if software is not None:
        exif[0x0131] = software
    if description is not None:
        exif[0x010E] = description
    if user_comment is not None:
        exif.get_ifd(0x8769)[0x9286] = user_comment
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels(value).save(path, fmt, exif=exif)
    return path


# --- C2PA -------------------------------------------------------------------------------------


def test_signer():
    """A c2pa Signer with an ES256 key and a two-certificate chain (a CA made here, and the
    signing certificate it issued): no network, no files."""
    import c2pa
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dfscan tests"),
            ]
        )

    def usage(signing: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signing,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not signing,
            crl_sign=not signing,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("dfscan test CA"))
        .issuer_name(name("dfscan test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("dfscan test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None)
    return c2pa.Signer.from_info(info)


test_signer.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def c2pa_signed(path: Path, source_type: str, fmt: str = "JPEG", value: int = 128) -> Path:
    """An image with a C2PA manifest whose c2pa.created action has ``source_type``."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "dfscan-test-generator", "version": "1.0"}],
        "title": path.name,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [{"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]
                },
            }
        ],
    }
    source = io.BytesIO()
    pixels(value).save(source, fmt)
    source.seek(0)
    out = io.BytesIO()
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}[fmt]
    with test_signer() as signer, c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, mime, source, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return path

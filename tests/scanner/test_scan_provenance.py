"""Provenance hints: each declaration style is found, bad metadata is a note, scores never move."""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import pytest

from dfscan.scanner.provenance import read as prov_mod
from dfscan.scanner.provenance.read import (
    DETAIL_MAX_CHARS,
    declared,
    generator_named,
    read_provenance,
)
from dfscan.scanner.scan.run import ScanOptions, run_scan

from ..provenance_files import (
    A1111,
    FRONT_ENDS,
    c2pa_signed,
    chunk,
    insert_before_iend,
    png_with_text,
    save_with_exif,
    save_with_xmp,
    xmp_as_element,
    xmp_packet,
)


def detail(prov) -> dict:
    text = prov.detail_json()
    assert text is None or len(text) <= DETAIL_MAX_CHARS
    return {} if text is None else json.loads(text)


@pytest.mark.parametrize("tool", sorted(FRONT_ENDS))
@pytest.mark.parametrize("zipped", [False, True])
def test_png_text_chunks_of_each_front_end(tmp_path: Path, tool: str, zipped: bool):
    path = png_with_text(tmp_path / f"{tool}.png", FRONT_ENDS[tool], zipped=zipped)
    prov = read_provenance(path)
    assert prov.label == f"png:{tool}", prov.detail
    assert detail(prov)["png"]["tool"] == tool
    assert declared(prov.label) == "generated"


def test_png_text_after_the_image_data_is_found_too(tmp_path: Path):
    path = insert_before_iend(
        png_with_text(tmp_path / "late.png", {}), chunk(b"tEXt", b"parameters\x00" + A1111.encode())
    )
    prov = read_provenance(path)
    assert prov.label == "png:a1111" and "Steps: 20" in detail(prov)["png"]["text"]


def test_a_plain_png_declares_nothing(tmp_path: Path):
    path = png_with_text(tmp_path / "plain.png", {"Title": "holiday", "Author": "me"})
    prov = read_provenance(path)
    assert prov.label is None and prov.detail_json() is None and declared(None) is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("form", [xmp_packet, xmp_as_element])
def test_xmp_digital_source_type(tmp_path: Path, fmt: str, form):
    path = save_with_xmp(tmp_path / f"x.{fmt.lower()}", fmt, form("trainedAlgorithmicMedia"))
    prov = read_provenance(path)
    assert prov.label == "xmp:trainedAlgorithmicMedia", prov.notes
    assert detail(prov)["xmp"]["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    camera = save_with_xmp(tmp_path / f"c.{fmt.lower()}", fmt, form("digitalCapture"))
    assert declared(read_provenance(camera).label) == "captured"


def test_xmp_creator_tool_naming_a_generator(tmp_path: Path):
    path = save_with_xmp(tmp_path / "t.jpg", "JPEG", xmp_packet(creator_tool="Adobe Firefly 3"))
    prov = read_provenance(path)
    assert prov.label == "xmp:Adobe Firefly" and declared(prov.label) == "generated"


def test_several_declarations_strongest_first(tmp_path: Path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly"
    path = tmp_path / "both.jpg"
    pixels = Image.new("RGB", (16, 16))
    pixels.save(path, "JPEG", exif=exif, xmp=xmp_packet("compositeWithTrainedAlgorithmicMedia"))
    label = read_provenance(path).label
    assert label == "xmp:compositeWithTrainedAlgorithmicMedia; exif:Adobe Firefly"
    assert declared(label) == "generated"
    assert declared("exif:Adobe Firefly; xmp:digitalCapture") == "generated"  # AI wins
    assert declared("c2pa:manifest") is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_software_names_a_generator(tmp_path: Path, fmt: str):
    path = save_with_exif(tmp_path / f"e.{fmt.lower()}", software="Midjourney v6.1", fmt=fmt)
    prov = read_provenance(path)
    assert prov.label == "exif:Midjourney", (prov.tags, prov.notes)
    assert detail(prov)["exif"] == {"Software": "Midjourney v6.1"}


def test_exif_description_and_user_comment(tmp_path: Path):
    described = save_with_exif(tmp_path / "d.jpg", description="made with STABLE DIFFUSION xl")
    assert read_provenance(described).label == "exif:Stable Diffusion"
    comment = save_with_exif(tmp_path / "u.jpg", user_comment=b"ASCII\0\0\0DALL-E 3 image")
    assert read_provenance(comment).label == "exif:DALL-E"
    unicode = b"UNICODE\0" + "Leonardo.Ai render".encode("utf-16-be")
    assert read_provenance(save_with_exif(tmp_path / "w.jpg", user_comment=unicode)).label == (
        "exif:Leonardo"
    )
    camera = save_with_exif(tmp_path / "cam.jpg", software="Adobe Photoshop 25.0")
    assert read_provenance(camera).label is None


def test_the_generator_table_is_case_insensitive_and_in_one_place():
    assert generator_named("IDEOGRAM 2.0") == "Ideogram"
    assert generator_named("NovelAI Diffusion") == "NovelAI"
    assert generator_named("GIMP 2.10") is None
    assert ("comfyui", "ComfyUI") in prov_mod.GENERATOR_NAMES


# --- bad input is normal input ----------------------------------------------------------------


def no_crash(path: Path) -> object:
    prov = read_provenance(path)
    detail(prov)  # valid, capped JSON
    return prov


def test_a_huge_text_chunk_is_read_only_in_part(tmp_path: Path):
    big = b"parameters\x00" + b"Steps: 20, " + b"x" * (50 << 20)  # 50 MB
    path = insert_before_iend(png_with_text(tmp_path / "big.png", {}), chunk(b"tEXt", big))
    prov = no_crash(path)
    assert prov.label == "png:a1111"
    assert any("read the first" in n for n in prov.notes)


def test_a_zip_bomb_text_chunk_is_decompressed_only_in_part(tmp_path: Path):
    import zlib

    bomb = b"parameters\x00\x00" + zlib.compress(b"Steps: 1 " + b"\0" * (200 << 20), 9)
    path = insert_before_iend(png_with_text(tmp_path / "bomb.png", {}), chunk(b"zTXt", bomb))
    prov = no_crash(path)
    assert prov.label == "png:a1111" and any("decompresses past" in n for n in prov.notes)


@pytest.mark.parametrize(
    "raw",
    [
        b"parameters\x00" + bytes(range(256)) * 4,  # binary garbage in a text field
        b"\x00no keyword",
        b"prompt\x00{not json",
    ],
)
def test_garbage_text_chunks(tmp_path: Path, raw: bytes):
    path = insert_before_iend(png_with_text(tmp_path / "g.png", {}), chunk(b"tEXt", raw))
    no_crash(path)


def test_broken_zlib_and_a_chunk_longer_than_the_file(tmp_path: Path):
    path = insert_before_iend(
        png_with_text(tmp_path / "z.png", {}), chunk(b"zTXt", b"parameters\x00\x00notzlib")
    )
    assert any("cannot decompress" in n for n in no_crash(path).notes)
    cut = tmp_path / "cut.png"
    data = png_with_text(tmp_path / "c.png", {"parameters": A1111}).read_bytes()
    at = data.index(b"tEXt") - 4
    cut.write_bytes(data[:at] + struct.pack(">I", 10_000_000) + data[at + 4 : at + 40])
    assert no_crash(cut).notes


def test_invalid_xml_still_yields_the_source_type(tmp_path: Path):
    broken = xmp_packet("trainedAlgorithmicMedia").replace(b"</rdf:RDF>", b"</rdf:RDFX><<")
    prov = no_crash(save_with_xmp(tmp_path / "bad.jpg", "JPEG", broken))
    assert prov.label == "xmp:trainedAlgorithmicMedia"
    assert any("invalid XMP" in n for n in prov.notes)
    garbage = no_crash(save_with_xmp(tmp_path / "g.jpg", "JPEG", os.urandom(2000)))
    assert garbage.label is None


def test_garbage_exif_and_truncated_files(tmp_path: Path):
    jpeg = save_with_exif(tmp_path / "e.jpg", software="Midjourney")
    data = jpeg.read_bytes()
    at = data.index(b"Exif\0\0") + 6
    (tmp_path / "garbled.jpg").write_bytes(data[:at] + os.urandom(60) + data[at + 60 :])
    no_crash(tmp_path / "garbled.jpg")
    for n in (3, 10, 30, len(data) // 2):
        (tmp_path / f"cut{n}.jpg").write_bytes(data[:n])
        no_crash(tmp_path / f"cut{n}.jpg")
    (tmp_path / "noise.gif").write_bytes(os.urandom(500))
    no_crash(tmp_path / "noise.gif")
    assert no_crash(tmp_path / "missing.png").notes  # not there: a note


def test_the_detail_is_capped(tmp_path: Path):
    texts = {"parameters": "Steps: 1 " + "y" * 5000, **{f"k{i}" * 30: "v" * 900 for i in range(40)}}
    prov = no_crash(png_with_text(tmp_path / "many.png", texts))
    assert prov.label == "png:a1111"


# --- C2PA ---------------------------------------------------------------------------------------

c2pa_missing = not prov_mod.c2pa_available()
needs_c2pa = pytest.mark.skipif(
    c2pa_missing, reason='c2pa-python is not installed (pip install "dfscan[provenance]")'
)


@needs_c2pa
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_c2pa_manifest_signed_in_the_test(tmp_path: Path, fmt: str):
    path = c2pa_signed(tmp_path / f"signed.{fmt.lower()}", "trainedAlgorithmicMedia", fmt)
    prov = read_provenance(path)
    assert prov.label == "c2pa:trainedAlgorithmicMedia", prov.notes
    info = detail(prov)["c2pa"]
    assert info["claim_generator"].startswith("dfscan-test-generator")
    assert info["validation_state"] in ("Valid", "Trusted")  # untrusted root: valid, not trusted
    composite = c2pa_signed(tmp_path / "comp.jpg", "compositeWithTrainedAlgorithmicMedia")
    assert read_provenance(composite).label == "c2pa:compositeWithTrainedAlgorithmicMedia"
    camera = read_provenance(c2pa_signed(tmp_path / "cam.jpg", "digitalCapture"))
    assert camera.label == "c2pa:digitalCapture" and declared(camera.label) == "captured"


@needs_c2pa
def test_a_damaged_c2pa_manifest_is_a_note_or_an_invalid_state(tmp_path: Path):
    data = c2pa_signed(tmp_path / "s.jpg", "trainedAlgorithmicMedia").read_bytes()
    at = data.index(b"c2pa.signature") + 40
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[:at] + bytes(b ^ 0xFF for b in data[at : at + 200]) + data[at + 200 :])
    prov = no_crash(broken)
    info = detail(prov).get("c2pa", {})
    assert info.get("validation_state") == "Invalid" or any("C2PA" in n for n in prov.notes)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: data.index(b"c2pa.signature")])
    no_crash(cut)


def test_without_c2pa_python_a_manifest_is_still_noticed(tmp_path: Path, monkeypatch):
    from dfscan.scanner.provenance import c2pa as provenance_c2pa

    monkeypatch.setattr(provenance_c2pa, "c2pa_available", lambda: False)
    # a JPEG with a JUMBF APP11 segment (the first bytes of a C2PA manifest store)
    jpeg = save_with_exif(tmp_path / "a.jpg", software="x").read_bytes()
    app11 = b"\xff\xeb" + struct.pack(">H", 2 + 20) + b"JP\x02\x11\0\0\0\x01\0\0\0\x1ejumdc2pa"
    path = tmp_path / "m.jpg"
    path.write_bytes(jpeg[:2] + app11[:24] + jpeg[2:])
    prov = read_provenance(path)
    assert prov.label == "c2pa:manifest" and declared(prov.label) is None
    assert any("dfscan[provenance]" in n for n in prov.notes)


# --- in the scan ----------------------------------------------------------------------------------


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {Path(r["path"]).name: r for r in csv.DictReader(f)}


def test_scan_reports_provenance_and_never_changes_a_score(tmp_path: Path, brightness_onnx: Path):
    data = tmp_path / "data"
    png_with_text(data / "sdxl" / "comfy.png", FRONT_ENDS["comfyui"], value=30)  # scored real
    png_with_text(data / "sdxl" / "a1111.png", FRONT_ENDS["a1111"], value=230)
    save_with_exif(data / "real" / "mj.jpg", software="Midjourney", value=20)
    save_with_xmp(data / "real" / "cam.jpg", "JPEG", xmp_packet("digitalCapture"), value=240)
    save_with_xmp(data / "real" / "plain.jpg", "JPEG", b"<bad", value=10)
    insert_before_iend(
        png_with_text(data / "sdxl" / "big.png", {}, value=200),
        chunk(b"tEXt", b"parameters\x00" + b"z" * (3 << 20)),
    )
    broken = data / "sdxl" / "broken.png"  # not an image, but it says what made it
    broken.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"tEXt", b"parameters\x00" + A1111.encode())[:-1]
    )
    on, off = tmp_path / "on.csv", tmp_path / "off.csv"
    jsonl = tmp_path / "on.jsonl"
    result = run_scan(ScanOptions([data], brightness_onnx, csv=on, jsonl=jsonl, device="cpu"))
    run_scan(ScanOptions([data], brightness_onnx, csv=off, device="cpu", provenance=False))
    with_prov, without = rows_of(on), rows_of(off)
    assert len(with_prov) == 7 == len(without)  # no row lost
    for name, row in with_prov.items():  # identical scores and verdicts
        other = without[name]
        assert (row["p_fake"], row["verdict"]) == (other["p_fake"], other["verdict"])
        assert without[name]["provenance"] == without[name]["provenance_detail"] == ""
    assert with_prov["comfy.png"]["provenance"] == "png:comfyui"
    assert with_prov["mj.jpg"]["provenance"] == "exif:Midjourney"
    assert with_prov["cam.jpg"]["provenance"] == "xmp:digitalCapture"
    assert with_prov["plain.jpg"]["provenance"] == ""
    assert "invalid XMP" in with_prov["plain.jpg"]["provenance_detail"]
    assert with_prov["big.png"]["provenance"] == "png:a1111"
    assert with_prov["broken.png"]["error"] and with_prov["broken.png"]["provenance"] == (
        "png:a1111"
    )
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert record["provenance_detail"] is None or isinstance(record["provenance_detail"], dict)
    summary = result.to_dict()
    # declared generated: comfy, a1111, big, broken (sdxl) and mj (real)
    assert summary["generators"]["sdxl"]["declared_generated"] == 4
    assert summary["generators"]["real"]["declared_generated"] == 1
    # disagree: comfy (declared AI, scored real), mj (same), cam (declared camera, scored fake)
    assert summary["generators"]["sdxl"]["declared_disagree"] == 1
    assert summary["generators"]["real"]["declared_disagree"] == 2
    assert summary["total"]["declared_generated"] == 5
    # and by what they declare
    assert summary["declared_by"] == {"exif:Midjourney": 1, "png:a1111": 3, "png:comfyui": 1}


def test_cli_no_provenance_and_the_summary_columns(tmp_path: Path, brightness_onnx: Path):
    from typer.testing import CliRunner

    from dfscan.scanner.cli.app import app

    data = tmp_path / "data"
    png_with_text(data / "gan" / "comfy.png", FRONT_ENDS["comfyui"], value=30)
    png_with_text(data / "real" / "plain.png", {}, value=30)
    runner = CliRunner()
    base = ["scan", str(data), "-m", str(brightness_onnx), "--device", "cpu", "-q"]
    shown = runner.invoke(app, base)
    assert shown.exit_code == 0, shown.output
    header = shown.stdout.splitlines()[1]
    assert "declared AI" in header and "disagree" in header
    gan = next(line for line in shown.stdout.splitlines() if line.startswith("gan"))
    assert gan.split()[-2:] == ["1", "1"]
    assert "declared generated: png:comfyui 1" in shown.stdout
    hidden = runner.invoke(app, [*base, "--no-provenance"])
    assert hidden.exit_code == 0 and "declared" not in hidden.stdout

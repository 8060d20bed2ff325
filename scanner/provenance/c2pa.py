"""C2PA manifests, read and validated offline by c2pa-python (the ``[provenance]`` extra): no
remote manifests, no OCSP. Without the extra a manifest is still tagged, with a note."""

from __future__ import annotations

import json
from typing import Any, BinaryIO

from ..errors import first_line
from .hints import GENERATED_SOURCE_TYPES, Provenance, snippet

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


def read_c2pa(f: BinaryIO, kind: str, prov: Provenance, enabled: bool) -> None:
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
        info["claim_generator"] = snippet(generator)
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

"""Which integer instructions this CPU offers ONNX Runtime's int8 kernels.

An int8 model's speed, and for graphs quantised with full 8-bit weights its scores, depend on
them: MLAS multiplies uint8 by int8 with VNNI's VPDPBUSD (int32 sums) where the CPU has it, and
with AVX2's VPMADDUBSW (saturating int16 pair sums) where it does not. Reported beside every
int8 figure (``dfscan export --check``, ``dfscan bench``) so a number says which path made it.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

# (flag in /proc/cpuinfo, what the int8 kernels use), best first
_INT8_PATHS = (
    ("amx_int8", "AMX-INT8"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512bw", "AVX-512 (no VNNI)"),
    ("avx2", "AVX2 (no VNNI)"),
    ("asimddp", "Arm dot product"),
)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_path(flags: frozenset[str]) -> str:
    """The best int8 instruction set in ``flags``, in words."""
    found = next((name for flag, name in _INT8_PATHS if flag in flags), None)
    if found is not None:
        return found
    return "baseline SIMD" if flags else f"unknown ({platform.machine() or 'cpu'})"


@cache
def int8_kernels() -> str:
    """This machine's int8 path, e.g. ``AVX2 (no VNNI)``."""
    return int8_path(cpu_flags())


_VNNI_FLAGS = frozenset({"amx_int8", "avx512_vnni", "avx_vnni"})


@cache
def has_vnni() -> bool:
    """Whether uint8·int8 products sum in int32 here (VNNI/AMX), never saturating."""
    return bool(cpu_flags() & _VNNI_FLAGS)

"""How a checkpoint is exported and checked: :class:`ExportSettings`, each default written once.

:func:`~dfscan.export.exporter.export_checkpoint` takes its keyword defaults from these fields
and ``dfscan export`` builds its options from them (:mod:`dfscan.scanner.cli.options`). Imports
neither torch nor onnx, so ``dfscan --help`` reads the defaults without loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from dfscan.scanner.errors import ExitCode
from dfscan.scanner.fields import option

INT8_FLOAT_STAGES = ("stem", "layer1")
"""Stages int8 leaves in float. Forensic traces are pixel-level residuals computed by the
full-resolution stages, where a weight rounded to 8 bits no longer cancels the image content
and activation rounding adds noise of the signal's own size. Measured on the demo Lite0
(validation AP 0.913 in fp32): all convs int8 → AP 0.603 (max |Δp| 0.97); stem in float →
0.889; stem + layer1 in float → 0.911 (max |Δp| 0.12)."""

AP_TOLERANCE = 0.01  # AP a reduced-precision graph may lose against the fp32 reference
InputDType = Literal["uint8", "float32"]  # the graph input: 0-255 bytes or 0-1 floats
INPUT_DTYPES: tuple[InputDType, ...] = get_args(InputDType)


def stage_list(option: str) -> tuple[str, ...]:
    """``--int8-float-stages``: a comma list; ``none`` (or nothing) keeps no stage in float."""
    return tuple(p.strip() for p in option.split(",") if p.strip() not in ("", "none"))


def stage_text(stages: Sequence[str]) -> str:
    """The comma list :func:`stage_list` reads back (``none`` for no stage)."""
    return ",".join(stages) or "none"


@dataclass(frozen=True)
class ExportSettings:
    """The choices of an export besides its input and output files."""

    precision: str = option("fp32", help="fp32, fp16 (GPU) or int8 (static, needs --calibration).")
    calibration: Path | None = option(  # noqa: RUF009 (option() is a dataclass field)
        None, help="Folder of real photos for int8 activation ranges."
    )
    calibration_limit: int = 128  # at most this many calibration images
    int8_float_stages: tuple[str, ...] = option(
        INT8_FLOAT_STAGES,
        help="int8: backbone stages kept in float (comma list, or 'none'); the early "
        "full-resolution stages carry the pixel-level traces. A stage that matches no "
        "node of the graph is an error.",
        cli_value=stage_text,
    )
    input_dtype: InputDType = option(  # noqa: RUF009 (option() is a dataclass field)
        "uint8", help="Graph input: uint8 (0-255, default) or float32 (0-1)."
    )
    check: bool = option(
        False,
        flags=("--check",),
        help="Compare eager, TorchScript and ONNX Runtime; fail on fp32 mismatch.",
    )
    check_images: Path | None = option(  # noqa: RUF009 (option() is a dataclass field)
        None, help="Images for --check (a dataset folder adds AP/AUC); default: bundled photos."
    )
    check_limit: int = option(64, help="At most this many check images.")
    ap_tolerance: float = option(
        AP_TOLERANCE,
        help="--check on labelled images: the AP an fp16/int8 graph may lose against the "
        f"fp32 model before the check fails (exit {ExitCode.PARITY.value}).",
    )


DEFAULTS = ExportSettings()

"""``dfscan calibrate``: the thin terminal layer over
:func:`dfscan.scanner.scan.calibrate.calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ..errors import ExitCode, exit_codes_help
from ..formatting import pct
from ..scan.options import CalibrateSettings
from .options import from_field, with_field_options
from .support import console, device_option, err_console, report_errors

if TYPE_CHECKING:
    from ..scan.calibrate import Calibration

# The codes ``dfscan calibrate`` can end with (its help lists them).
CALIBRATE_EXIT_CODES = (
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.MISSING_EXTRA,
    ExitCode.MODEL,
    ExitCode.DEVICE,
    ExitCode.BUG,
    ExitCode.INTERRUPTED,
)
CALIBRATE_HELP = (
    "Re-set a detector's threshold on your own real photos and write a copy of the model.\n\n"
    "Scores every image under --reals (recursively, as dfscan scan reads them) and sets the "
    "threshold that flags at most --target-fpr of them: with n photos, k = floor(target × n) "
    "may be flagged, and the threshold lies just above the (k+1)-th highest score. The copy's "
    "detector spec carries it, with its rule and the number of photos; the graph is copied "
    "unchanged. Unreadable files are skipped and counted. Fewer than 10/target photos (200 at "
    "5 %) earn a warning: the rate on new photos is then uncertain.\n\n"
    + exit_codes_help(
        CALIBRATE_EXIT_CODES,
        {
            ExitCode.USAGE: "bad arguments, missing folder, no readable images, --out exists "
            "(without --overwrite)",
            ExitCode.MISSING_EXTRA: "an optional extra is missing (the built-in detector's "
            "first assembly)",
        },
    )
)

ModelArg = Annotated[
    Path | None,
    typer.Argument(
        help="A .onnx detector written by dfscan export; omitted: the built-in detector.",
        show_default=False,
    ),
]
RealsOpt = Annotated[
    Path,
    typer.Option(
        "--reals",
        help="Folder of your own real (not generated) photos, read recursively.",
        show_default=False,
    ),
]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out", "-o", help="Where to write the calibrated .onnx copy.", show_default=False
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace --out if it exists (also the model itself)."),
]
DeviceOpt = Annotated[
    str, device_option(help="auto: CUDA when it works, else CPU; calibrate where you will scan.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@report_errors
@with_field_options
def calibrate(
    reals: RealsOpt,
    out: OutOpt,
    model: ModelArg = None,
    target_fpr: float = from_field(CalibrateSettings),
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    batch_size: int = from_field(CalibrateSettings),
    quiet: QuietOpt = False,
) -> None:
    """Re-set a detector's threshold on your own real photos (see CALIBRATE_HELP)."""
    from ..scan.calibrate import calibrate as run_calibration
    from .scan import _Bar, _progress

    bar = None if quiet else _Bar(_progress())
    try:
        result = run_calibration(
            model,
            reals,
            out,
            target_fpr,
            overwrite=overwrite,
            device=device,
            batch_size=batch_size,
            progress=bar,
            notify=_warn,
        )
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/]; {escape(str(out))} was not written")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        if bar is not None:
            bar.stop()
    print_calibration(result)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def calibration_lines(result: Calibration) -> list[str]:
    """The summary, as plain text (paths and names are the user's: printed without markup)."""
    skipped = f"; skipped {len(result.skipped)} unreadable" if result.skipped else ""
    fpr_low, fpr_high = result.interval
    return [
        f"calibrated {result.model.name} ({result.precision}) on {result.n} real photos in "
        f"{result.folder}/{skipped}",
        f"threshold: {result.threshold_before:g} → {result.threshold:g}",
        f"rule: {result.rule}; was: {result.rule_before}",
        f"false-positive rate on these photos at the old threshold: {pct(result.fpr_before)} "
        f"({result.flagged_before} of {result.n})",
        f"false-positive rate at the new threshold: {pct(result.fpr)} ({result.flagged} of "
        f"{result.n}), 95% interval {pct(fpr_low)}–{pct(fpr_high)} (Wilson)",
        f"wrote {result.out}",
    ]


def print_calibration(result: Calibration) -> None:
    for line in calibration_lines(result):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.skipped:
        path, why = result.skipped[0]
        err_console.print(
            f"skipped {len(result.skipped)} unreadable file(s), e.g. {escape(path)}: {escape(why)}",
            highlight=False,
        )
    for warning in result.warnings:
        _warn(warning)

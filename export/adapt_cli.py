"""``dfscan adapt``: the built-in detector refitted on the user's own real photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dfscan.scanner.cli.support import console, err_console, report_errors
from dfscan.scanner.errors import DataError

ADAPT_HELP = (
    "Refit the built-in detector's head with your own real photos and write it as a new "
    "model.\n\n"
    "The head moves where dfscan's training data held it loosely (a diagonal Laplace summary "
    "of that data ships with dfscan) and your photos push it; the threshold becomes the larger "
    "of the shipped one and the one flagging 5 % of your photos scored by heads fitted without "
    "them. Scan with the result: dfscan scan FOLDER --model OUT.onnx. For a model you trained "
    "yourself, retrain with your photos in DATA/real/ instead."
)


@report_errors
def adapt(
    reals: Annotated[
        Path,
        typer.Option(
            "--reals",
            help="Folder of your own real photos (at least 10), read recursively.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to write the adapted .onnx.", show_default=False),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace --out if it exists.")
    ] = False,
) -> None:
    """Refit the built-in detector on your real photos (see ADAPT_HELP)."""
    from dfscan.scanner.model.builtin import load_part

    from .adapt import adapt as run_adapt

    if out.exists() and not overwrite:
        raise DataError(f"{out} exists", hint="pass --overwrite to replace it")
    result = run_adapt(load_part(), reals, out)
    lo, hi = result.interval
    skipped = f"; skipped {result.skipped} unreadable" if result.skipped else ""
    console.print(
        f"adapted the built-in detector on {result.reals} photos in {escape(reals.name)}/{skipped}",
        highlight=False,
    )
    console.print(
        f"threshold: {result.threshold_before:.5g} → {result.threshold:.5g}", highlight=False
    )
    console.print(f"rule: {escape(result.rule)}", highlight=False)
    console.print(
        f"your photos flagged: {result.flagged_before} by the shipped detector; "
        f"{result.flagged_cross_fitted} by adapted heads that did not see them "
        f"(95 % interval of that rate {100 * lo:.1f}%–{100 * hi:.1f}%)",
        highlight=False,
    )
    console.print(f"wrote {escape(str(out))}", highlight=False)
    if result.reals < 200:
        err_console.print(
            f"[yellow]warning:[/] {result.reals} photos: the false-positive rate on new photos of "
            "this kind is uncertain (200 or more pin it to a few percent)",
            highlight=False,
        )

"""``dfscan report``: rebuild the HTML page of a scan from its CSV or JSONL report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .support import err_console, report_errors


@report_errors
def report(
    report_file: Annotated[
        Path,
        typer.Argument(
            help="A report written by dfscan scan (--csv, or --jsonl for a .jsonl file).",
            show_default=False,
        ),
    ],
    html: Annotated[Path, typer.Option("--html", help="Write the HTML page here.")],
) -> None:
    """Make the self-contained HTML page of an existing scan report."""
    from ..scan.html_report import rebuild_from_report

    collector = rebuild_from_report(report_file, html)
    total = collector.tallies.total()
    err_console.print(
        f"wrote {html}: {total.images + total.errors} files, {total.flagged} flagged fake, "
        f"{total.errors} errors",
        markup=False,
        highlight=False,
    )

"""``dfscan scan``: the thin terminal layer over :func:`dfscan.scanner.scan.run.run_scan`.

Options, the progress bar (stderr), the summary table (stdout: Rich when it is a terminal,
plain aligned text when piped) and exit codes. Heavy imports (numpy, Pillow, ONNX Runtime)
happen inside the command, so ``dfscan --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ..errors import ExitCode, exit_codes_help
from ..formatting import pct
from ..labels import REAL
from ..scan.options import Engine, RayOptions, ScanOptions
from .options import from_field, with_field_options
from .support import DEVICE_GRAMMAR, console, err_console, report_errors

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..scan.run import ScanResult
    from ..scan.tallies import GeneratorTable

# The codes ``dfscan scan`` can end with (its help lists them, with these notes of its own).
SCAN_EXIT_CODES = (
    ExitCode.OK,
    ExitCode.FAKE_FOUND,
    ExitCode.USAGE,
    ExitCode.MISSING_EXTRA,
    ExitCode.MODEL,
    ExitCode.DEVICE,
    ExitCode.BUG,
    ExitCode.INTERRUPTED,
)
SCAN_HELP = (
    "Scan folders of images and report which look generated.\n\n"
    "Formats: jpg jpeg png webp bmp tif tiff gif, any case; of an animated GIF or WebP the "
    "first frame is scanned. Files that cannot be read become rows with an error.\n\n"
    + exit_codes_help(
        SCAN_EXIT_CODES,
        {
            ExitCode.OK: "done (also when some files were unreadable)",
            ExitCode.FAKE_FOUND: "an image was flagged fake and --fail-on-fake was given",
            ExitCode.USAGE: "bad arguments, missing folder, no images found or a report file "
            "that cannot be used (exists, another model or threshold)",
            ExitCode.MISSING_EXTRA: "an optional extra is missing (--engine ray, or the "
            "built-in detector's first assembly)",
        },
    )
)


class _Bar:
    """The scan's progress on a Rich bar, shown from the first file on (not while the model
    loads); the total arrives later, from a counting thread."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("scanning", total=None)
        self.started = False

    def start(self) -> None:
        self.progress.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self.progress.stop()

    def set_total(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Files per second since the start: steadier than Rich's windowed estimate."""

        def render(self, task: Any) -> Text:
            elapsed = task.finished_time or task.elapsed
            rate = task.completed / elapsed if elapsed and task.completed else None
            return Text(f"{rate:6.1f} img/s" if rate else "    ? img/s", style="cyan")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("s" if count != 1 and noun.isalpha() else "")


def plain_table(table: GeneratorTable) -> str:
    """Aligned columns for logs and pipes: names left, numbers right."""
    lines = [table.header, *table.rows, table.total]
    widths = [max(len(r[i]) for r in lines) for i in range(len(table.header))]

    def line(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])

    rule = "-" * len(line(table.header))
    rows = (line(r) for r in table.rows)
    return "\n".join([line(table.header), rule, *rows, rule, line(table.total)])


def summary_notes(result: ScanResult) -> list[str]:
    """The lines under the table: the false-positive rate on real, what files declare, and
    how many duplicate files were skipped (only those that apply)."""
    fpr = result.tallies.false_positive_rate()
    real = result.tallies.by_generator.get(REAL)
    lines = []
    if fpr is not None and real is not None:
        lines.append(f"false-positive rate on real: {pct(fpr)} ({real.flagged} of {real.images})")
    declared = result.tallies.declared_line()
    if declared:
        lines.append(declared)
    if result.duplicates:
        lines.append(
            f"skipped {_n(result.duplicates, 'duplicate')}: files reached again through a "
            "link or another scanned folder are scanned once"
        )
    return lines


def print_summary(result: ScanResult) -> None:
    """The table and its notes. Names (model, generator folders, what files declare) are the
    user's: printed as text, never read as Rich markup (a folder ``[red]x`` stays ``[red]x``)."""
    from ..scan.tallies import generator_table

    table = generator_table(result.tallies)
    title = f"{result.model.name} · threshold {result.threshold:g}"
    if not console.is_terminal:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
        console.print(plain_table(table), markup=False, highlight=False, soft_wrap=True)
        for line in summary_notes(result):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    from rich.table import Table

    shown = Table(title=escape(title), title_justify="left")
    for i, name in enumerate(table.header):
        shown.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in table.rows:
        shown.add_row(*map(escape, r))
    shown.add_section()
    shown.add_row(*map(escape, table.total), style="bold")
    console.print(shown)
    for line in summary_notes(result):
        console.print(line, markup=False, highlight=False)


def _notes(result: ScanResult, quiet: bool) -> None:
    for folder, reason in result.unlisted:
        what = escape(f"could not list {folder}: {reason}")
        err_console.print(f"[yellow]warning:[/] {what}", highlight=False)
    if quiet:
        return
    if result.animated:
        err_console.print(
            f"{_n(result.animated, 'animated GIF/WebP')}: only the first frame was scanned",
            highlight=False,
        )
    if result.ignored:
        err_console.print(
            f"ignored {_n(result.ignored, 'file')} without an image extension", highlight=False
        )
    rate = f", {result.rate:.1f} img/s" if result.rate else ""
    resumed = f" ({result.resumed} from an earlier run)" if result.resumed else ""
    if result.retried:
        resumed += f" ({_n(result.retried, 'error row')} scanned again)"
    reports = f"; rows in {', '.join(map(str, result.reports))}" if result.reports else ""
    if result.html is not None:
        reports += f"; page {result.html}"
    err_console.print(
        f"scanned {_n(result.scanned, 'file')}{resumed} in {result.elapsed_s:.1f} s{rate} "
        f"on {result.provider}{reports}",
        markup=False,
        highlight=False,
    )


# The options of ``dfscan scan``, declared once here so the command's signature stays short.
FoldersArg = Annotated[
    list[str],
    typer.Argument(
        help="Folders to scan (recursively); the first-level subfolder of a file is its "
        "generator. Files may be given too, and fsspec URIs (s3://bucket/prefix) with the "
        "Ray engine.",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="A .onnx detector written by dfscan export. Default: dfscan's built-in detector "
        "(dfscan models shows its card).",
        show_default=False,
    ),
]
SummaryJsonOpt = Annotated[
    Path | None,
    typer.Option("--summary-json", help="Write the summary as JSON to this file ('-': to stdout)."),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the scan in the existing --csv/--jsonl.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing --csv/--jsonl files.")
]
NoProvenanceOpt = Annotated[
    bool,
    typer.Option(
        "--no-provenance",
        help="Do not read what files declare about their origin (C2PA, XMP, PNG text, EXIF).",
    ),
]
FailOnFakeOpt = Annotated[
    bool,
    typer.Option(
        "--fail-on-fake", help=f"Exit {ExitCode.FAKE_FOUND.value} if an image is flagged fake."
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no notes on stderr.")
]


@report_errors
@with_field_options
def scan(
    folders: FoldersArg,
    model: ModelOpt = None,
    csv: Path | None = from_field(ScanOptions),
    jsonl: Path | None = from_field(ScanOptions),
    summary_json: SummaryJsonOpt = None,
    html: Path | None = from_field(ScanOptions),
    threshold: float | None = from_field(ScanOptions),
    device: str = from_field(ScanOptions, **DEVICE_GRAMMAR),
    batch_size: int = from_field(ScanOptions),
    workers: int | None = from_field(ScanOptions),
    engine: Engine = from_field(ScanOptions),
    address: str | None = from_field(RayOptions),
    cpus_per_worker: float = from_field(RayOptions),
    gpus_per_worker: float = from_field(RayOptions),
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    no_provenance: NoProvenanceOpt = False,
    retry_errors: bool = from_field(ScanOptions),
    fail_on_fake: FailOnFakeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Scan folders of images and report which look generated (see SCAN_HELP)."""
    from ..model.builtin import resolve_model

    _check_report_flags(resume, overwrite, retry_errors)
    options = ScanOptions(
        folders=folders,
        model=resolve_model(model, _note),
        csv=csv,
        jsonl=jsonl,
        threshold=threshold,
        device=device,
        batch_size=batch_size,
        workers=None if engine == "ray" else workers,
        existing="resume" if resume else "overwrite" if overwrite else "refuse",
        retry_errors=retry_errors,
        provenance=not no_provenance,
        html=html,
        engine=engine,
        ray=RayOptions(
            address=address,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
        ),
    )
    result = _run_with_bar(options, quiet)
    if summary_json is not None:
        write_summary_json(result, summary_json)
    if summary_json is None or str(summary_json) != "-":
        print_summary(result)
    _notes(result, quiet)
    if fail_on_fake and result.any_fake():
        raise typer.Exit(ExitCode.FAKE_FOUND)


def _check_report_flags(resume: bool, overwrite: bool, retry_errors: bool) -> None:
    """The flag combinations that cannot mean anything, refused before a model is loaded."""
    if resume and overwrite:
        raise typer.BadParameter("choose one of --resume and --overwrite")
    if retry_errors and not resume:
        raise typer.BadParameter("--retry-errors continues a report: pass it with --resume")


def _note(message: str) -> None:
    err_console.print(f"[dim]{escape(message)}[/]", highlight=False)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _run_with_bar(options: ScanOptions, quiet: bool) -> ScanResult:
    """Run the scan under a progress bar (none with --quiet); Ctrl-C exits 130 and says where
    the rows so far are, for --resume."""
    from ..scan.run import run_scan

    bar = None if quiet else _Bar(_progress())
    try:
        return run_scan(options, bar, notify=_warn)
    except KeyboardInterrupt:
        written = [p for p in (options.csv, options.jsonl) if p is not None]
        where = f"; rows so far are in {', '.join(map(str, written))}" if written else ""
        err_console.print(f"[yellow]interrupted[/]{escape(where)} (continue with --resume)")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        if bar is not None:
            bar.stop()


def write_summary_json(result: ScanResult, target: Path) -> None:
    """The summary as JSON to ``target``, or to stdout when it is ``-``."""
    text = json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    if str(target) == "-":
        sys.stdout.write(text + "\n")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")

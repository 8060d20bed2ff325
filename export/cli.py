"""The ``dfscan export`` command; torch and onnx are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape

from dfscan.scanner.cli.options import from_field, with_field_options
from dfscan.scanner.cli.support import console, err_console, report_errors

from .settings import ExportSettings, stage_list

if TYPE_CHECKING:
    from .exporter import ExportResult
    from .settings import InputDType


def register(app: typer.Typer) -> None:
    from .adapt_cli import ADAPT_HELP, adapt

    app.command("export")(export)
    app.command("demo")(demo)
    app.command("adapt", help=ADAPT_HELP)(adapt)


# The options of ``dfscan export``, declared once here so the command's signature stays short.
CheckpointArg = Annotated[Path, typer.Argument(help="A model.ckpt written by dfscan train.")]
OnnxOpt = Annotated[Path, typer.Option("--onnx", help="Where to write the .onnx graph.")]
TorchscriptOpt = Annotated[
    Path | None, typer.Option("--torchscript", help="Also write a TorchScript file (fp32).")
]


@report_errors
@with_field_options
def export(
    checkpoint: CheckpointArg,
    onnx: OnnxOpt,
    torchscript: TorchscriptOpt = None,
    precision: str = from_field(ExportSettings),
    calibration: Path | None = from_field(ExportSettings),
    int8_float_stages: str = from_field(ExportSettings),
    input_dtype: str = from_field(ExportSettings),
    check: bool = from_field(ExportSettings),
    check_images: Path | None = from_field(ExportSettings),
    check_limit: int = from_field(ExportSettings),
    ap_tolerance: float = from_field(ExportSettings),
) -> None:
    """Export a checkpoint to ONNX (and TorchScript) with the preprocessing maths and metadata."""
    from .exporter import export_checkpoint

    result = export_checkpoint(
        checkpoint,
        onnx,
        torchscript_path=torchscript,
        precision=precision,
        calibration=calibration,
        input_dtype=cast("InputDType", input_dtype),  # export_checkpoint checks the value
        check=check,
        check_images=check_images,
        check_limit=check_limit,
        ap_tolerance=ap_tolerance,
        int8_float_stages=stage_list(int8_float_stages),
    )
    print_export(result)
    result.raise_for_parity()
    console.print(f"done in {result.seconds:.1f} s")


def print_export(result: ExportResult) -> None:
    """What was written: the graph, the int8 threshold and why, TorchScript, parity table."""
    from .exporter import file_size

    meta = result.meta
    console.print(
        f"{meta.arch} {meta.input} {meta.size}² {meta.precision}, threshold "
        f"{meta.threshold:.3f} → {result.onnx_path} ({file_size(result.onnx_bytes)})",
        markup=False,
    )
    matched = result.int8_threshold
    if matched is not None:
        console.print(
            f"int8 threshold {matched.threshold:.6f} (fp32 {matched.fp32_threshold:.6f}): flags "
            f"{100 * matched.int8_fpr:.1f} % of the {matched.reals} calibration reals, as fp32 "
            f"does ({100 * matched.fpr:.1f} %; the fp32 threshold would flag "
            f"{100 * matched.int8_fpr_at_fp32_threshold:.1f} %)"
        )
    if result.torchscript_path is not None and result.torchscript_bytes is not None:
        size = file_size(result.torchscript_bytes)
        console.print(f"TorchScript → {result.torchscript_path} ({size})", markup=False)
    if result.parity is not None:
        console.print(result.parity.table())
        for note in result.parity.notes:
            err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


@report_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the data, run, model and report.")] = Path(
        "dfscan-demo"
    ),
    recipe: Annotated[
        str, typer.Option(help="Training recipe (dfscan train --list-recipes).")
    ] = "robust",
    input: Annotated[
        str | None, typer.Option(help="Detector input: spatial or fft \\[the recipe's].")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Training epochs \\[the recipe's].")
    ] = None,
) -> None:
    """Build demo data, train a detector (recipe robust), export it, scan the test images."""
    from .demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, recipe=recipe, input=input, epochs=epochs), console, err_console)

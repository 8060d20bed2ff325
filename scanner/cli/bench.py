"""The ``dfscan bench`` command: runs :func:`dfscan.scanner.bench.run.run_bench` and shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..bench.settings import BenchSettings
from .options import from_field, with_field_options
from .support import DEVICE_GRAMMAR, console, err_console, report_errors


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def ratio_note(r: dict[str, Any]) -> str:
    """``2.31× (2.10–2.52, 7 rounds; 41.2 vs 17.8 images/s)``: median, spread, raw rates."""
    if r["median"] is None:
        return "n/a"
    low, high = r["spread"]
    rates = f"{_rate(r['numerator_images_per_s'])} vs {_rate(r['denominator_images_per_s'])}"
    return f"{r['median']:.2f}× ({low:.2f}–{high:.2f}, {r['rounds']} rounds; {rates} images/s)"


def _stage_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for fmt, d in report["decode"].items():
        pool = f"{d['workers']} threads"
        versus = d.get("region_vs_full")
        region = f"region decode: {ratio_note(versus)}" if versus else ""
        for what, key in (("1 thread", "images_per_s_1_thread"), (pool, "images_per_s_pool")):
            rows.append(("decode+preprocess", f"{fmt}, {what}", _rate(d[key]), region))
            region = ""
        if versus:
            full = _rate(d["images_per_s_1_thread_full_decode"])
            rows.append(("decode+preprocess", f"{fmt}, 1 thread, whole image", full, ""))
    for fmt, d in report["provenance"].items():
        note = f"{d['ms_per_image']:.3f} ms per image; {d['declaring']} of {d['images']} declare"
        rows.append(("provenance hints", f"{fmt}, 1 thread", _rate(d["images_per_s"]), note))
    for m in report["model_only"]:
        what = f"{m['provider'].replace('ExecutionProvider', '')}, batch {m['batch_size']}"
        note = f"p50 {m['latency_p50_ms']:.1f} ms, p95 {m['latency_p95_ms']:.1f} ms per batch"
        rows.append(("model only", what, _rate(m["images_per_s"]), note))
    for fmt, s in report["scan"].items():
        off = s.get("images_per_s_without_provenance")
        notes = [f"{_rate(off)} with --no-provenance"] if off else []
        if s.get("images_per_s_whole_image_decode"):
            notes.append(f"{_rate(s['images_per_s_whole_image_decode'])} decoding whole images")
        if s.get("fraction_of_limit") is not None:
            notes.append(f"{100 * s['fraction_of_limit']:.0f}% of the limit")
        notes.append(f"{100 * s['fraction_of_model_only']:.0f}% of model only")
        if s.get("cores_busy") is not None:
            notes.append(f"{s['cores_busy']:.2f} cores busy")
        rows.append(("end-to-end scan", fmt, _rate(s["images_per_s"]), "; ".join(notes)))
    limit = report.get("limit") or {}
    for fmt in report["scan"]:
        if fmt in limit:
            note = (
                f"{limit['cores']} cores / ({limit[fmt]['decode_core_ms']:.1f} ms decode + "
                f"{limit['model_core_ms']:.1f} ms model core-time per image, batch "
                f"{limit['batch_size']}); the model alone kept {limit['model_cores_busy']:.2f} "
                "cores busy"
            )
            rows.append(("limit", fmt, _rate(limit[fmt]["images_per_s"]), note))
    for r in report.get("ray") or []:
        vs = "" if r["vs_local"] is None else f"; {100 * r['vs_local']:.0f}% of the local engine"
        what = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
        note = f"{r['images']} images in {r['seconds']:.1f} s (actor start-up included){vs}"
        rows.append(("Ray engine scan", what, _rate(r["images_per_s"]), note))
    serve: dict[str, Any] = report.get("serve") or {}
    for c in (32, 1) if serve else ():
        s = serve[f"concurrency_{c}"]
        lat, mean = s["latency_ms"], serve["mean_batch"]
        note = (
            f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms; {100 * s['vs_scan']:.0f}% of "
            f"the scan; mean batch {'n/a' if mean is None else f'{mean:.1f}'}"
        )
        rows.append(("HTTP server (serve)", f"concurrency {c}", _rate(s["images_per_s"]), note))
    for m in report["memory"]:
        rss = "n/a" if m["peak_rss_mb"] is None else f"{m['peak_rss_mb']:.0f} MB"
        what = f"{m['files']:,} small files"
        rows.append(("scan memory", what, _rate(m["files_per_s"]), f"peak RSS {rss}"))
    return rows


def bench_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(stage, what, images/s, notes) rows of the summary table."""
    rows = _stage_rows(report)
    rows += [("ratio", name, "", ratio_note(r)) for name, r in report["ratios"].items()]
    torch = report.get("torch")
    if torch:
        for r in torch["runtimes"]:
            rows.append(("PyTorch side", r["name"], _rate(r["images_per_s"]), r.get("note", "")))
        rows += [("ratio", name, "", ratio_note(r)) for name, r in torch["ratios"].items()]
        loss = torch.get("int8_ap_loss")
        note = "n/a (no labelled folder)" if loss is None else f"{loss:+.4f}"
        rows.append(("int8 AP loss", "fp32 AP − int8 AP", "", note))
    cli = report["cli_startup_s"]
    spread = " / ".join(f"{lo:.2f}–{hi:.2f}" for lo, hi in cli["spread"].values())
    note = f"median {cli['help']:.2f} s / {cli['version']:.2f} s ({spread}, {cli['rounds']} runs)"
    rows.append(("CLI start-up", "--help / --version", "", note))
    return rows


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    m, model = report["machine"], report["model"]
    console.print(
        f"{m['cpu']}, {m['cores_available']} cores, GPU: {m['gpu'] or 'none'}; onnxruntime "
        f"{m['onnxruntime']}; model {model['arch']} {model['input']} {model['crop_size']}² "
        f"{model['precision']} on {model['provider']}; images: {report['images']['source']}",
        highlight=False,
    )
    table = Table(show_lines=False)
    table.add_column("stage", no_wrap=True)
    table.add_column("what")
    table.add_column("images/s", justify="right")
    table.add_column("notes")
    for row in bench_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"peak RSS of this benchmark: {report['peak_rss_mb']:.0f} MB", highlight=False)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise typer.BadParameter(f"{what} must be positive")
    return values


@report_errors
@with_field_options
def bench(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="A .onnx detector written by dfscan export.")
    ],
    folder: Annotated[
        Path | None,
        typer.Argument(help="Images to measure on; default: synthetic 1024² JPEGs and PNGs."),
    ] = None,
    checkpoint: Path | None = from_field(BenchSettings),
    device: str = from_field(BenchSettings, **DEVICE_GRAMMAR),
    batch_sizes: str = from_field(BenchSettings),
    images: int = from_field(BenchSettings),
    memory_files: str = from_field(BenchSettings),
    min_seconds: float = from_field(BenchSettings),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report as JSON.")
    ] = None,
    smoke: bool = from_field(BenchSettings),
    engine: str = from_field(BenchSettings),
    rounds: int = from_field(BenchSettings),
) -> None:
    """Measure decoding, the model alone, end-to-end scans, memory and start-up."""
    from ..bench.run import run_bench

    if engine not in ("local", "ray"):
        raise typer.BadParameter("--engine is local or ray")
    if engine == "ray":
        from ..scan.sources import require

        require("ray")
    common: dict[str, Any] = dict(
        model=model, folder=folder, device=device, checkpoint=checkpoint, engine=engine
    )
    if smoke:
        settings = BenchSettings.for_smoke(**common)
    else:
        settings = BenchSettings(
            **common,
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            images=images,
            memory_files=_ints(memory_files, "--memory-files"),
            min_seconds=min_seconds,
            rounds=rounds,
        )
    report = run_bench(
        settings, note=lambda msg: err_console.print(f"[dim]{escape(msg)}…[/]", highlight=False)
    )
    print_report(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"report: {json_out}", highlight=False)

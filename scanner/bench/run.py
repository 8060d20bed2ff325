"""``dfscan bench``: every stage of a scan measured on its own and together.

Stages (:mod:`.bench_stages`): decoding + preprocessing per image format (one thread, and the
scanner's pool), reading provenance hints (on the plain files and on copies that declare a
generator), the model alone per batch size and execution provider, the real end-to-end scan
(the same ``run_scan`` the CLI uses, also with provenance off), ``dfscan serve`` against that
scan (throughput at concurrency 32 and 1, latency p50/p99; with the ``[serve]`` extra), scan
memory against folder size (separate processes, so each peak is its own), and CLI start-up time.

Every ratio (a scan against the model alone, with provenance against without) comes from
interleaved rounds (:mod:`.bench_timing`): median, spread and rounds, beside the raw rates.

Other packages add stages through the ``dfscan.bench`` entry-point group: ``dfscan[export]``
registers ``torch`` (eager, TorchScript, the seed's pipeline, int8 and fft/spatial), run when
a checkpoint is given. This module never imports them by name, so it stays torch-free.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import tempfile
from dataclasses import fields
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DataError, DeviceError
from ..model.decode_region import fast_decode_enabled
from ..model.detector import Detector
from ..model.runtime import CPU, CUDA, Device, available_cores, available_providers
from ..scan.discovery import DiscoveryStats, Found, discover
from ..scan.pipeline import default_workers
from ..serve.bench_stage import (
    CONCURRENCY,
    SCAN,
    arm_name,
    bench_serve,
    serve_installed,
)
from .images import make_bench_images, with_declarations
from .settings import BenchContext, BenchSettings, BenchStage, Note
from .stages import (
    ScanRun,
    bench_cli_startup,
    bench_decode,
    bench_limit,
    bench_memory,
    bench_model,
    bench_provenance,
    bench_ray,
    model_arm,
    sample_crops,
    scan_options,
)
from .timing import Rounds, ratio_summary, run_rounds

PROVIDERS = {"cpu": CPU, "cuda": CUDA}
FORMAT_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}
STAGE_GROUP = "dfscan.bench"  # entry points: name -> a BenchStage; its result is report[name]
CHECKPOINT_STAGE = "torch"  # the stage --checkpoint asks for (dfscan[export] installs it)


def plugin_stages() -> dict[str, BenchStage]:
    """The installed ``dfscan.bench`` stages, by name (sorted: a stable report)."""
    found = sorted(entry_points(group=STAGE_GROUP), key=lambda ep: ep.name)
    return {ep.name: ep.load() for ep in found}


def wanted_stages(settings: BenchSettings) -> dict[str, BenchStage]:
    stages = plugin_stages()
    if settings.checkpoint is not None and CHECKPOINT_STAGE not in stages:
        raise DataError(
            "--checkpoint is measured by the PyTorch bench stage, which is not installed",
            hint='pip install "dfscan[export]"',
        )
    return {name: stage for name, stage in stages.items() if stage.wanted(settings)}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime as ort

    return {
        "cpu": cpu,
        "cores_available": available_cores(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers_available": available_providers(),
        "dfscan": __version__,
    }


def gpu_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) or None


def files_by_format(folder: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for found in discover([folder], DiscoveryStats()):
        if found.problem is None:
            fmt = FORMAT_OF_SUFFIX.get(Path(found.path).suffix.lower(), "other")
            groups.setdefault(fmt, []).append(Path(found.path))
    if not groups:
        raise DataError(f"no images to benchmark in {folder}")
    return groups


def providers_to_measure(device: Device) -> list[Device]:
    if device == "cpu":
        return ["cpu"]
    if device == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if CUDA in available_providers() else ["cpu"]


def run_bench(settings: BenchSettings, note: Note = lambda message: None) -> dict[str, Any]:
    """All stages; returns the report as a JSON-ready dict (see ``REQUIRED_FIELDS``)."""
    workers = default_workers() if settings.workers is None else settings.workers
    stages = wanted_stages(settings)  # before any work: a missing plug-in fails fast
    report: dict[str, Any] = {"machine": machine_info(), "settings": _settings_dict(settings)}
    main = Detector.from_onnx(settings.model, settings.device)
    if main.warning:
        note(main.warning)
    report["model"] = _model_info(main, settings, workers)
    with tempfile.TemporaryDirectory(prefix="dfscan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        groups, folders = _bench_images(settings, tmp, report, note)
        note("decoding")
        report["decode"] = {
            fmt: bench_decode(p, main, workers, settings.rounds, settings.turn_seconds)
            for fmt, p in groups.items()
        }
        note("provenance hints")
        report["provenance"] = _provenance(groups, tmp, settings)
        note("model alone")
        crops = sample_crops(next(iter(groups.values())), main, max(settings.batch_sizes))
        report["model_only"] = _model_only(main, crops, settings, note)
        note(f"end-to-end scans against the model alone, {settings.rounds} interleaved rounds")
        report["ratios"] = {}
        scan_rounds = _scans(report, main, crops, folders, settings, tmp, note)
        note("the limit: core-time per image of decoding and of the model, interleaved")
        _limit(report, scan_rounds, main, crops, groups, folders, settings)
        report["serve"] = _serve(report, main, groups, folders, settings, tmp, note)
        report["ray"] = None
        if settings.engine == "ray":
            note("Ray engine, 1 and 2 workers")
            first = next(iter(folders))
            rate = report["scan"][first]["images_per_s"]
            report["ray"] = bench_ray(folders[first], settings, tmp, rate)
        report["memory"] = []
        if settings.memory_files:
            note(f"scan memory for {', '.join(map(str, settings.memory_files))} files")
            report["memory"] = bench_memory(settings, tmp)
        note("CLI start-up")
        report["cli_startup_s"] = bench_cli_startup(3 if settings.smoke else 7)
        report[CHECKPOINT_STAGE] = None
        context = BenchContext(settings, report, main, groups, crops, tmp, note)
        for name, stage in stages.items():
            report[name] = stage.run(context)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    missing = missing_fields(report)
    if missing:
        raise RuntimeError(f"benchmark report lacks {missing}")
    return report


def _model_info(main: Detector, settings: BenchSettings, workers: int) -> dict[str, Any]:
    meta = main.meta
    return {
        "path": str(settings.model),
        "arch": meta.arch,
        "input": meta.input,
        "crop_size": meta.size,
        "preprocess_mode": meta.preprocess.mode,
        "precision": meta.precision,
        "provider": main.provider,
        "threads": {"onnxruntime_intra_op": available_cores(), "decode_workers": workers},
    }


def _bench_images(
    settings: BenchSettings, tmp: Path, report: dict[str, Any], note: Note
) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """(files per format, folders to scan per format); records where they came from."""
    if settings.folder is None:
        note(f"making {settings.images} JPEG + {settings.images} PNG test images")
        folders = make_bench_images(tmp / "images", settings.images, settings.image_size)
        groups = {fmt: sorted(f.iterdir()) for fmt, f in folders.items()}
        source = f"synthetic {settings.image_size}² photo-like (1/f) images"
    else:
        groups = files_by_format(settings.folder)
        folders = {"all": settings.folder}
        source = str(settings.folder)
    report["images"] = {"source": source, "per_format": {k: len(v) for k, v in groups.items()}}
    return groups, folders


def _provenance(
    groups: dict[str, list[Path]], tmp: Path, settings: BenchSettings
) -> dict[str, Any]:
    seconds = min(settings.min_seconds, 1.0)
    out = {fmt: bench_provenance(paths, seconds) for fmt, paths in groups.items()}
    declaring = tmp / "declaring"
    declaring.mkdir()
    for fmt, paths in groups.items():
        if fmt in ("jpeg", "png"):
            copies = [with_declarations(p, declaring / f"{fmt}-{p.name}") for p in paths[:16]]
            out[f"{fmt} declaring"] = bench_provenance(copies, seconds)
    return out


def _model_only(
    main: Detector, crops: np.ndarray, settings: BenchSettings, note: Note
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for device in providers_to_measure(settings.device):
        detector = main if main.provider == PROVIDERS[device] else _try_open(settings, device, note)
        if detector is not None:
            rows += bench_model(detector, crops, settings.batch_sizes, settings.min_seconds)
    return rows


def _scans(
    report: dict[str, Any],
    main: Detector,
    crops: np.ndarray,
    folders: dict[str, Path],
    settings: BenchSettings,
    tmp: Path,
    note: Note,
) -> Rounds:
    """Each folder's scan, the first also without provenance, and the model alone on the
    scan's batch size, all in the same interleaved rounds; ratios within each round."""
    runs = {
        fmt: ScanRun(scan_options(folder, settings, tmp / f"{fmt}.csv"), main)
        for fmt, folder in folders.items()
    }
    first = next(iter(folders))
    without = f"{first}, --no-provenance"
    runs[without] = ScanRun(
        scan_options(folders[first], settings, tmp / "off.csv", provenance=False), main
    )
    whole = f"{first}, whole-image decode"
    region_decode = main.meta.preprocess.mode == "crop" and fast_decode_enabled()
    if region_decode:  # the scan as it was before the region decode, in the same rounds
        runs[whole] = ScanRun(
            scan_options(folders[first], settings, tmp / "whole.csv"), main, full_decode=True
        )
    model = f"model only, batch {settings.scan_batch_size}"
    arms = {name: run.arm() for name, run in runs.items()}
    arms[model] = model_arm(main, crops, settings.scan_batch_size)
    rounds = run_rounds(arms, settings.rounds, settings.turn_seconds, note)
    report["scan"] = {}
    for fmt in folders:
        share = rounds.ratio(fmt, model)
        report["ratios"][f"scan / model only ({fmt})"] = share
        report["scan"][fmt] = runs[fmt].summary(rounds.rate(fmt))
        report["scan"][fmt]["fraction_of_model_only"] = share["median"]
    report["scan"][first]["images_per_s_without_provenance"] = rounds.rate(without)
    report["ratios"][f"scan with / without provenance ({first})"] = rounds.ratio(first, without)
    if region_decode:
        report["scan"][first]["images_per_s_whole_image_decode"] = rounds.rate(whole)
        report["ratios"][f"scan, region / whole-image decode ({first})"] = rounds.ratio(
            first, whole
        )
    return rounds


def _limit(
    report: dict[str, Any],
    rounds: Rounds,
    main: Detector,
    crops: np.ndarray,
    groups: dict[str, list[Path]],
    folders: dict[str, Path],
    settings: BenchSettings,
) -> None:
    """``report["limit"]``: the images/s each folder's scan could reach if decoding and the
    model shared the cores perfectly, and the scan's share of it (per round of its rates)."""
    every = [p for paths in groups.values() for p in paths]
    files = {fmt: [Found(str(p), "bench") for p in groups.get(fmt, every)] for fmt in folders}
    limit = bench_limit(
        files, main, crops, settings.scan_batch_size, settings.rounds, settings.turn_seconds
    )
    report["limit"] = limit
    for fmt in folders:
        ceiling = limit[fmt]["images_per_s"]
        per_round = [rate / ceiling for rate in rounds.rates[fmt]] if ceiling else []
        share = ratio_summary(per_round, rounds.rate(fmt), ceiling)
        report["ratios"][f"scan / limit ({fmt})"] = share
        report["scan"][fmt]["fraction_of_limit"] = share["median"]


def _serve(
    report: dict[str, Any],
    main: Detector,
    groups: dict[str, list[Path]],
    folders: dict[str, Path],
    settings: BenchSettings,
    tmp: Path,
    note: Note,
) -> dict[str, Any] | None:
    """``report["serve"]``: ``dfscan serve`` (in this process, on 127.0.0.1) against the scan
    of the first folder, in interleaved rounds; None without the ``[serve]`` extra."""
    if not serve_installed():
        note('HTTP server not measured: the [serve] extra is missing (pip install "dfscan[serve]")')
        return None
    note(f"HTTP server against the scan, {settings.rounds} interleaved rounds")
    first = next(iter(folders))
    files = groups.get(first) or [p for paths in groups.values() for p in paths]
    scan = ScanRun(scan_options(folders[first], settings, tmp / "serve-scan.csv"), main)
    out, rounds = bench_serve(
        files,
        scan.arm(),
        settings.model,
        settings.device,
        settings.workers,
        settings.rounds,
        settings.turn_seconds,
        note,
    )
    for c in CONCURRENCY:
        report["ratios"][f"serve, concurrency {c} / scan ({first})"] = rounds.ratio(
            arm_name(c), SCAN
        )
    return out


def _try_open(settings: BenchSettings, device: Device, note: Note) -> Detector | None:
    try:
        return Detector.from_onnx(settings.model, device)
    except DeviceError as exc:
        note(f"{device} not measured: {exc.message}")
        return None


def _settings_dict(s: BenchSettings) -> dict[str, Any]:
    out = {f.name: getattr(s, f.name) for f in fields(s)}
    for key in ("model", "folder", "checkpoint"):
        out[key] = None if out[key] is None else str(out[key])
    out["batch_sizes"], out["memory_files"] = list(s.batch_sizes), list(s.memory_files)
    out["images_per_format"] = out.pop("images")
    return out


REQUIRED_FIELDS = (
    "machine.cpu",
    "machine.cores_available",
    "machine.gpu",
    "model.provider",
    "model.threads",
    "images.per_format",
    "decode",
    "provenance",
    "model_only",
    "scan",
    "limit",
    "ratios",
    "memory",
    "serve",
    "cli_startup_s.help",
    "cli_startup_s.version",
    "cli_startup_s.rounds",
    "cli_startup_s.spread",
    "peak_rss_mb",
    CHECKPOINT_STAGE,
)


def missing_fields(report: dict[str, Any]) -> list[str]:
    missing = []
    for dotted in REQUIRED_FIELDS:
        node: Any = report
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(dotted)
                break
            node = node[key]
    return missing

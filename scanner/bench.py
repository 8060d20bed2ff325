"""``dfscan bench``: every stage of a scan measured on its own and together.

Stages: decoding + preprocessing per image format (one thread, and the scanner's pool),
reading provenance hints (headers and chunks; on the plain files and on copies that declare a
generator), the model alone per batch size and execution provider, the real end-to-end scan
(the same ``run_scan`` the CLI uses, also with provenance off), scan memory against folder
size (separate processes, so each peak is its own), and CLI start-up time.
``dfscan.export.bench_torch`` adds the PyTorch side (eager, TorchScript, the seed's pipeline,
int8 and fft/spatial variants) when a checkpoint is given; it is imported only then, so this
module stays torch-free.

Figures are medians of repeated timings after a warm-up run; they are reported, never asserted.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfscan.scanner import __version__
from dfscan.scanner.bench_images import make_bench_images, make_small_pngs, with_declarations
from dfscan.scanner.detector import Detector
from dfscan.scanner.discovery import DiscoveryStats, Found, discover
from dfscan.scanner.errors import DataError
from dfscan.scanner.pipeline import decode, decode_ahead, default_workers
from dfscan.scanner.runtime import CPU, CUDA, Device, available_cores, available_providers
from dfscan.scanner.scan import ScanOptions, run_scan

PROVIDERS = {"cpu": CPU, "cuda": CUDA}
FORMAT_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


@dataclass
class BenchSettings:
    model: Path
    folder: Path | None = None  # None: synthetic 1024² JPEGs and PNGs
    device: Device = "auto"
    batch_sizes: Sequence[int] = (1, 8, 16, 32)
    scan_batch_size: int = 16
    images: int = 64  # per format, when synthetic
    image_size: int = 1024
    min_seconds: float = 3.0  # per model-only measurement
    memory_files: Sequence[int] = ()  # e.g. (1000, 20000): scan memory vs folder size
    checkpoint: Path | None = None
    workers: int | None = None
    smoke: bool = False
    engine: str = "local"  # "ray": also the Ray engine with 1 and 2 workers on the same folder

    @classmethod
    def for_smoke(cls, **kwargs: Any) -> BenchSettings:
        """Seconds, not minutes: tiny images, two batch sizes, one timing each (for CI)."""
        base = dict(
            batch_sizes=(1, 2),
            scan_batch_size=2,
            images=4,
            image_size=128,
            min_seconds=0.0,
            memory_files=(20, 40),
            smoke=True,
        )
        return cls(**(base | kwargs))


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q))


def time_repeated(fn: Callable[[], object], min_seconds: float, max_runs: int = 200) -> Timing:
    """One warm-up call, then calls until ``min_seconds`` have passed (at least three)."""
    fn()
    timing = Timing()
    start = time.perf_counter()
    while len(timing.seconds) < 3 or (
        time.perf_counter() - start < min_seconds and len(timing.seconds) < max_runs
    ):
        t = time.perf_counter()
        fn()
        timing.seconds.append(time.perf_counter() - t)
    return timing


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


def bench_decode(paths: list[Path], detector: Detector, workers: int) -> dict[str, Any]:
    """Decode + preprocess (as the scanner does): one thread, then the scanner's pool."""
    cfg = detector.meta.preprocess
    found = [Found(str(p), "bench") for p in paths]
    t = time.perf_counter()
    decoded = [decode(f, cfg) for f in found]
    one = time.perf_counter() - t
    errors = sum(d.error is not None for d in decoded)
    t = time.perf_counter()
    for _ in decode_ahead(found, cfg, workers, prefetch=2 * workers + 8):
        pass
    pool = time.perf_counter() - t
    return {
        "images": len(paths),
        "errors": errors,
        "images_per_s_1_thread": len(paths) / one,
        "images_per_s_pool": len(paths) / pool,
        "workers": workers,
    }


def bench_provenance(paths: list[Path], min_seconds: float) -> dict[str, Any]:
    """``read_provenance`` over the files on one thread: what every scanned file pays."""
    from dfscan.scanner.provenance import read_provenance

    declaring = sum(read_provenance(p).label is not None for p in paths)
    timing = time_repeated(lambda: [read_provenance(p) for p in paths], min_seconds)
    per_image = timing.median / len(paths)
    return {
        "images": len(paths),
        "declaring": declaring,
        "ms_per_image": 1e3 * per_image,
        "images_per_s": 1 / per_image if per_image > 0 else None,
    }


def sample_crops(paths: list[Path], detector: Detector, n: int) -> np.ndarray:
    """Up to ``n`` decoded model inputs (NHWC uint8), repeated when there are fewer files."""
    cfg = detector.meta.preprocess
    crops = [d.pixels for d in (decode(Found(str(p), "b"), cfg) for p in paths[:n])]
    crops = [c for c in crops if c is not None]
    if not crops:
        raise DataError("none of the benchmark images could be decoded")
    reps = -(-n // len(crops))
    return np.stack((crops * reps)[:n])


def bench_model(
    detector: Detector, crops: np.ndarray, batch_sizes: Sequence[int], min_seconds: float
) -> list[dict[str, Any]]:
    rows = []
    for bs in batch_sizes:
        batch = np.ascontiguousarray(np.resize(crops, (bs, *crops.shape[1:])))
        timing = time_repeated(lambda b=batch: detector.run(b), min_seconds)
        rows.append(
            {
                "provider": detector.provider,
                "batch_size": bs,
                "images_per_s": bs / timing.median,
                "latency_p50_ms": 1e3 * timing.median,
                "latency_p95_ms": 1e3 * timing.percentile(95),
                "runs": len(timing.seconds),
            }
        )
    return rows


def bench_scan(
    folder: Path, detector: Detector, settings: BenchSettings, tmp: Path, provenance: bool = True
) -> dict[str, Any]:
    """The real pipeline (discovery, decode pool, provenance, batches, CSV) on one folder."""
    options = ScanOptions(
        folders=[folder],
        model=settings.model,
        csv=tmp / f"{folder.name}.csv",
        existing="overwrite",
        batch_size=settings.scan_batch_size,
        workers=settings.workers,
        provenance=provenance,
    )
    run_scan(options, detector=detector)  # warm-up: file cache, thread pools
    result = run_scan(options, detector=detector)
    errors = result.tallies.total().errors
    return {"images": result.scanned, "images_per_s": result.rate, "errors": errors}


def bench_ray(
    folder: Path, settings: BenchSettings, tmp: Path, local: dict[str, Any]
) -> list[dict[str, Any]]:
    """The same folder through ``--engine ray`` (a local Ray on this machine), 1 and 2 actors.

    Each scan starts its actors afresh (as a real one does), so on a small folder the figure
    includes that start-up; ``vs_local`` is the rate as a share of the local engine's.
    """
    import ray

    from dfscan.scanner.engine_ray import RayOptions

    rows = []
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(2, available_cores()), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)  # fmt: skip
    try:
        for workers in (1, 2):
            options = ScanOptions(
                folders=[folder],
                model=settings.model,
                csv=tmp / f"ray-{workers}.csv",
                existing="overwrite",
                batch_size=settings.scan_batch_size,
                engine="ray",
                ray=RayOptions(workers=workers),
            )
            result = run_scan(options)
            rate = result.rate
            rows.append(
                {
                    "workers": workers,
                    "images": result.scanned,
                    "seconds": result.elapsed_s,
                    "images_per_s": rate,
                    "vs_local": None
                    if not rate or not local["images_per_s"]
                    else rate / local["images_per_s"],
                }
            )
    finally:
        if started:
            ray.shutdown()
    return rows


def _scanner_command() -> list[str]:
    return [sys.executable, "-m", "dfscan.scanner"]


# The child reports its own peak (VmHWM of its post-exec address space). The rusage of a child
# is no good here: Linux carries the parent's peak RSS over fork+exec into the child's maxrss.
_REPORT_PEAK = """
import os
from dfscan.scanner.cli import main
try:
    main()
finally:
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM")]
    with open(os.environ["DFSCAN_PEAK_FILE"], "w") as out:
        out.write(peak[0] if peak else "")
"""


def run_measured(args: list[str], tmp: Path) -> tuple[float, float | None, int]:
    """(seconds, peak RSS in MB or None, exit code) of the dfscan CLI in a fresh process."""
    peak_file = tmp / "peak.txt"
    peak_file.unlink(missing_ok=True)
    env = os.environ | {"DFSCAN_PEAK_FILE": str(peak_file)}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_PEAK, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - t
    text = peak_file.read_text().strip() if peak_file.is_file() else ""
    return seconds, (int(text) / 1024 if text else None), proc.returncode


def bench_memory(settings: BenchSettings, tmp: Path) -> list[dict[str, Any]]:
    """Peak RSS of whole scans of growing folders: flat means memory does not grow with files."""
    rows = []
    for n in settings.memory_files:
        folder = make_small_pngs(tmp / f"small-{n}", n)
        args = [
            "scan",
            str(folder),
            "--model",
            str(settings.model),
            "--device",
            "cpu",
            "--quiet",
            "--csv",
            str(tmp / f"small-{n}.csv"),
        ]
        seconds, rss, code = run_measured(args, tmp)
        if code != 0:
            raise DataError(f"the scan of {n} small files failed (exit {code})")
        rows.append(
            {"files": n, "peak_rss_mb": rss, "seconds": seconds, "files_per_s": n / seconds}
        )
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def bench_cli_startup(runs: int = 3) -> dict[str, float]:
    """Wall time of ``dfscan --help`` and ``--version`` in a fresh interpreter (best of runs)."""
    out = {}
    for flag in ("--help", "--version"):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([*_scanner_command(), flag], capture_output=True, check=False)
            times.append(time.perf_counter() - t)
        out[flag.strip("-")] = min(times)
    return out


def providers_to_measure(device: Device) -> list[Device]:
    if device == "cpu":
        return ["cpu"]
    if device == "cuda":
        return ["cuda"]
    return ["cpu", "cuda"] if CUDA in available_providers() else ["cpu"]


def run_bench(
    settings: BenchSettings, note: Callable[[str], None] = lambda message: None
) -> dict[str, Any]:
    """All stages; returns the report as a JSON-ready dict (see ``REQUIRED_FIELDS``)."""
    workers = default_workers() if settings.workers is None else settings.workers
    report: dict[str, Any] = {"machine": machine_info(), "settings": _settings_dict(settings)}
    main = Detector.from_onnx(settings.model, settings.device)
    if main.warning:
        note(main.warning)
    meta = main.meta
    report["model"] = {
        "path": str(settings.model),
        "arch": meta.arch,
        "input": meta.input,
        "crop_size": meta.size,
        "preprocess_mode": meta.preprocess.mode,
        "precision": meta.precision,
        "provider": main.provider,
        "threads": {"onnxruntime_intra_op": available_cores(), "decode_workers": workers},
    }
    with tempfile.TemporaryDirectory(prefix="dfscan-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if settings.folder is None:
            note(f"making {settings.images} JPEG + {settings.images} PNG test images")
            folders = make_bench_images(tmp / "images", settings.images, settings.image_size)
            groups = {fmt: sorted(f.iterdir()) for fmt, f in folders.items()}
            source = f"synthetic {settings.image_size}² photo-like (1/f) images"
        else:
            groups = files_by_format(settings.folder)
            folders = {}
            source = str(settings.folder)
        report["images"] = {"source": source, "per_format": {k: len(v) for k, v in groups.items()}}

        note("decoding")
        report["decode"] = {
            fmt: bench_decode(paths, main, workers) for fmt, paths in groups.items()
        }

        note("provenance hints")
        report["provenance"] = {
            fmt: bench_provenance(paths, min(settings.min_seconds, 1.0))
            for fmt, paths in groups.items()
        }
        declaring = tmp / "declaring"
        declaring.mkdir()
        for fmt, paths in groups.items():
            if fmt in ("jpeg", "png"):
                copies = [with_declarations(p, declaring / f"{fmt}-{p.name}") for p in paths[:16]]
                report["provenance"][f"{fmt} declaring"] = bench_provenance(
                    copies, min(settings.min_seconds, 1.0)
                )

        note("model alone")
        crops = sample_crops(next(iter(groups.values())), main, max(settings.batch_sizes))
        report["model_only"] = []
        for device in providers_to_measure(settings.device):
            same = main.provider == PROVIDERS[device]
            detector = main if same else _try_open(settings.model, device, note)
            if detector is not None:
                report["model_only"] += bench_model(
                    detector, crops, settings.batch_sizes, settings.min_seconds
                )

        note("end-to-end scans")
        scan_folders = folders or {"all": settings.folder}
        report["scan"] = {}
        for fmt, folder in scan_folders.items():
            assert folder is not None
            row = bench_scan(folder, main, settings, tmp)
            row["fraction_of_model_only"] = _fraction(
                row["images_per_s"], report, main.provider, settings.scan_batch_size
            )
            report["scan"][fmt] = row
        first = next(iter(scan_folders))
        first_folder = scan_folders[first]
        assert first_folder is not None
        off = bench_scan(first_folder, main, settings, tmp, provenance=False)
        report["scan"][first]["images_per_s_without_provenance"] = off["images_per_s"]

        report["ray"] = None
        if settings.engine == "ray":
            note("Ray engine, 1 and 2 workers")
            report["ray"] = bench_ray(first_folder, settings, tmp, report["scan"][first])

        report["memory"] = []
        if settings.memory_files:
            note(f"scan memory for {', '.join(map(str, settings.memory_files))} files")
            report["memory"] = bench_memory(settings, tmp)
        report["cli_startup_s"] = bench_cli_startup(1 if settings.smoke else 3)

        report["torch"] = None
        if settings.checkpoint is not None:
            note("PyTorch comparisons")
            from dfscan.export.bench_torch import torch_comparisons

            jpeg = groups.get("jpeg") or next(iter(groups.values()))
            report["torch"] = torch_comparisons(settings, report, jpeg, crops, tmp, note)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    missing = missing_fields(report)
    if missing:
        raise RuntimeError(f"benchmark report lacks {missing}")
    return report


def _try_open(model: Path, device: Device, note: Callable[[str], None]) -> Detector | None:
    from dfscan.scanner.errors import DeviceError

    try:
        return Detector.from_onnx(model, device)
    except DeviceError as exc:
        note(f"{device} not measured: {exc.message}")
        return None


def _fraction(rate: float | None, report: dict[str, Any], provider: str, bs: int) -> float | None:
    rows = [r for r in report["model_only"] if r["provider"] == provider]
    if rate is None or not rows:
        return None
    best = min(rows, key=lambda r: abs(r["batch_size"] - bs))
    return rate / best["images_per_s"]


def _settings_dict(s: BenchSettings) -> dict[str, Any]:
    return {
        "folder": None if s.folder is None else str(s.folder),
        "device": s.device,
        "batch_sizes": list(s.batch_sizes),
        "scan_batch_size": s.scan_batch_size,
        "images_per_format": s.images,
        "image_size": s.image_size,
        "min_seconds": s.min_seconds,
        "memory_files": list(s.memory_files),
        "checkpoint": None if s.checkpoint is None else str(s.checkpoint),
        "smoke": s.smoke,
        "engine": s.engine,
    }


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
    "memory",
    "cli_startup_s.help",
    "cli_startup_s.version",
    "peak_rss_mb",
    "torch",
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

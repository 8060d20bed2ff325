"""The stages ``dfscan bench`` measures, each on its own: decoding, provenance hints, the model
alone, the real scan, the Ray engine, scan memory and CLI start-up. Comparisons between them
are made in interleaved rounds (:mod:`dfscan.scanner.bench.timing`), by :mod:`.bench`."""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..model.decode_region import fast_decode_enabled, full_decode_only
from ..model.detector import Detector
from ..model.runtime import available_cores
from ..scan.discovery import Found
from ..scan.pipeline import decode, decode_ahead
from ..scan.run import ScanOptions, ScanResult, run_scan
from .images import make_small_pngs
from .timing import (
    Arm,
    core_seconds_rounds,
    repeated_interleaved,
    run_rounds,
    time_repeated,
)

if TYPE_CHECKING:
    from .settings import BenchSettings


def bench_decode(
    paths: list[Path],
    detector: Detector,
    workers: int,
    rounds: int = 3,
    turn_seconds: float = 1.0,
) -> dict[str, Any]:
    """Decode + preprocess (as the scanner does): one thread, then the scanner's pool.

    In crop mode, also the region decode against decoding whole images (the way before it),
    one thread each, in interleaved rounds: ``region_vs_full`` is that speed-up.
    """
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
    out: dict[str, Any] = {
        "images": len(paths),
        "errors": errors,
        "images_per_s_1_thread": len(paths) / one,
        "images_per_s_pool": len(paths) / pool,
        "workers": workers,
        "region_vs_full": None,
    }
    if cfg.mode == "crop" and fast_decode_enabled():
        both = run_rounds(
            {"region": decode_arm(found, detector), "full": decode_arm(found, detector, full=True)},
            rounds,
            turn_seconds,
        )
        out["images_per_s_1_thread"] = both.rate("region")
        out["images_per_s_1_thread_full_decode"] = both.rate("full")
        out["region_vs_full"] = both.ratio("region", "full")
    return out


def decode_arm(found: list[Found], detector: Detector, full: bool = False) -> Arm:
    """Decode + preprocess of ``found`` on this thread; ``full``: whole images (no region)."""
    cfg = detector.meta.preprocess

    def run() -> None:
        if full:
            with full_decode_only():
                for f in found:
                    decode(f, cfg)
        else:
            for f in found:
                decode(f, cfg)

    return Arm(run, len(found))


def bench_limit(
    found: dict[str, list[Found]],
    detector: Detector,
    crops: np.ndarray,
    batch_size: int,
    rounds: int,
    turn_seconds: float,
) -> dict[str, Any]:
    """The scan's ceiling: images/s if decoding and the model shared the cores perfectly,
    ``cores / (decode core-s + model core-s per image)``, per format.

    Core-time per image is measured (process CPU time, interleaved rounds): decoding on one
    thread, the model on its batches of ``batch_size`` with its own threads.
    """
    arms = {fmt: decode_arm(files, detector) for fmt, files in found.items()}
    arms["model"] = model_arm(detector, crops, batch_size)
    times = core_seconds_rounds(arms, rounds, turn_seconds)
    cores = available_cores()
    model = statistics.median(times.per_item["model"])
    out: dict[str, Any] = {
        "cores": cores,
        "model_core_ms": 1e3 * model,
        "batch_size": batch_size,
        # what the model alone kept busy: below ``cores`` on a quiet host, its own threads
        # idle; on a shared one, other processes had the rest (the scan cannot do better)
        "model_cores_busy": statistics.median(times.busy["model"]),
    }
    for fmt in found:
        dec = statistics.median(times.per_item[fmt])
        out[fmt] = {
            "decode_core_ms": 1e3 * dec,
            "images_per_s": cores / (dec + model) if dec + model > 0 else None,
        }
    return out


def bench_provenance(paths: list[Path], min_seconds: float) -> dict[str, Any]:
    """``read_provenance`` over the files on one thread: what every scanned file pays."""
    from ..provenance.read import read_provenance

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
    decoded = [decode(Found(str(p), "b"), cfg).pixels for p in paths[:n]]
    crops = [c for c in decoded if c is not None]
    if not crops:
        raise DataError("none of the benchmark images could be decoded")
    reps = -(-n // len(crops))
    return np.stack((crops * reps)[:n])


def batch_of(crops: np.ndarray, batch_size: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(crops, (batch_size, *crops.shape[1:])))


def model_arm(detector: Detector, crops: np.ndarray, batch_size: int) -> Arm:
    """The model alone on one prepared batch (what a scan's batches cost without the rest)."""
    batch = batch_of(crops, batch_size)
    return Arm(lambda: detector.run(batch), batch_size)


def bench_model(
    detector: Detector, crops: np.ndarray, batch_sizes: Sequence[int], min_seconds: float
) -> list[dict[str, Any]]:
    rows = []
    for bs in batch_sizes:
        batch = batch_of(crops, bs)
        timing = time_repeated(functools.partial(detector.run, batch), min_seconds)
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


def scan_options(
    folder: Path, settings: BenchSettings, csv: Path, provenance: bool = True
) -> ScanOptions:
    return ScanOptions(
        folders=[folder],
        model=settings.model,
        csv=csv,
        existing="overwrite",
        batch_size=settings.scan_batch_size,
        workers=settings.workers,
        provenance=provenance,
    )


class ScanRun:
    """One call = one real scan (discovery, decode pool, provenance, batches, CSV) of a folder
    with a warm session; returns the scan's own time, as its rate does (without opening the
    model and the reports). The last result is kept for its counts."""

    def __init__(self, options: ScanOptions, detector: Detector, full_decode: bool = False) -> None:
        self.options, self.detector, self.full_decode = options, detector, full_decode
        self.last: ScanResult | None = None
        self.busy: list[float] = []  # per scan: process CPU seconds / wall seconds

    def __call__(self) -> float:
        cpu, wall = time.process_time(), time.perf_counter()
        if self.full_decode:  # whole images, as before the region decode
            with full_decode_only():
                self.last = run_scan(self.options, detector=self.detector)
        else:
            self.last = run_scan(self.options, detector=self.detector)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        self.busy.append(cpu / wall if wall > 0 else 0.0)
        return self.last.elapsed_s

    def arm(self) -> Arm:
        """A warm-up scan, then the arm (its item count is what that scan found)."""
        self()
        assert self.last is not None
        return Arm(self, self.last.scanned)

    def summary(self, rate: float) -> dict[str, Any]:
        assert self.last is not None
        return {
            "images": self.last.scanned,
            "images_per_s": rate,
            "errors": self.last.tallies.total().errors,
            # cores this process kept busy while scanning (median of the scans): below the
            # cores available, either the scan waits (a stall) or other processes had them
            "cores_busy": statistics.median(self.busy) if self.busy else None,
        }


def bench_ray(
    folder: Path, settings: BenchSettings, tmp: Path, local_rate: float | None
) -> list[dict[str, Any]]:
    """The same folder through ``--engine ray`` (a local Ray on this machine), 1 and 2 actors.

    Each scan starts its actors afresh (as a real one does), so on a small folder the figure
    includes that start-up; ``vs_local`` is the rate as a share of the local engine's.
    """
    import ray

    from ..scan.engine_ray import RayOptions

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
                    "vs_local": None if not rate or not local_rate else rate / local_rate,
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
from dfscan.scanner.cli.app import main
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
        csv = str(tmp / f"small-{n}.csv")
        args = ["scan", str(folder), "--model", str(settings.model), "--device", "cpu"]
        seconds, rss, code = run_measured([*args, "--quiet", "--csv", csv], tmp)
        if code != 0:
            raise DataError(f"the scan of {n} small files failed (exit {code})")
        rows.append(
            {"files": n, "peak_rss_mb": rss, "seconds": seconds, "files_per_s": n / seconds}
        )
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def bench_cli_startup(runs: int = 7) -> dict[str, Any]:
    """Wall time of ``dfscan --help`` and ``--version`` in fresh interpreters, alternating the
    two: the median of ``runs`` each, and their spread."""

    def command(flag: str):
        return lambda: subprocess.run([*_scanner_command(), flag], capture_output=True, check=False)

    seconds = repeated_interleaved({f: command(f"--{f}") for f in ("help", "version")}, runs)
    out: dict[str, Any] = {name: statistics.median(s) for name, s in seconds.items()}
    out["rounds"] = runs
    out["spread"] = {name: [min(s), max(s)] for name, s in seconds.items()}
    return out

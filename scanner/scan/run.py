"""Scanning folders: discovery → decoding pool → batched ONNX inference → reports and tallies.

:func:`run_scan` is the whole ``dfscan scan`` command without the terminal: the CLI adds the
progress bar and the table, tests and other programs call it directly.

Order of checks, cheapest and least destructive first: folders exist, the model loads, at
least one image is found, then (and only then) report files are opened or resumed.

Provenance (what each file declares about itself, :mod:`dfscan.scanner.provenance.read`) is read
beside decoding, on its own small thread pool fed by the same stream of files, in the same
order; it fills two columns and never touches a score.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from ..errors import DataError
from ..model.builtin import file_sha256, resolve_model
from ..model.detector import Detector
from ..model.preprocess import IMAGE_EXTENSIONS
from .discovery import (
    DiscoveryStats,
    Found,
    check_roots,
    count_pending,
    discover,
)
from .html_report import ReportCollector, RunInfo, write_html
from .options import ScanOptions
from .reports import Row
from .resume import OpenedReports, check_reports, open_reports
from .sources import check_uri, discover_uri, is_uri
from .stream import local_stream
from .tallies import Tallies


def _path(value: Path | str | None) -> Path | None:
    """A path field of :class:`ScanOptions` as its type says it is after ``__post_init__``."""
    return None if value is None else Path(value)


def _model(options: ScanOptions) -> Path:
    """The model's path, once :func:`run_scan` has resolved it (the built-in one for None)."""
    return cast(Path, options.model)


class ScanProgress(Protocol):
    """What the scan tells a progress display (the total arrives later, from a counter)."""

    def start(self) -> None: ...

    def set_total(self, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


@dataclass
class ScanResult:
    tallies: Tallies
    threshold: float
    model: Path
    arch: str
    provider: str
    model_sha256: str = ""
    scanned: int = 0  # files processed by this run
    resumed: int = 0  # rows already in the reports when it started
    retried: int = 0  # rows with an error taken out of the reports to be scanned again
    animated: int = 0  # animated GIF/WebP of which the first frame was scanned
    ignored: int = 0  # files without an image extension
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # folders not listable
    duplicates: int = 0  # files met again through a link or another root: scanned once
    elapsed_s: float = 0.0
    reports: list[Path] = field(default_factory=list)
    html: Path | None = None

    @property
    def rate(self) -> float | None:
        """Files per second of this run."""
        return self.scanned / self.elapsed_s if self.elapsed_s > 0 else None

    def any_fake(self) -> bool:
        return self.tallies.total().flagged > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "model_sha256": self.model_sha256,
            "arch": self.arch,
            "provider": self.provider,
            "threshold": self.threshold,
            "files_scanned": self.scanned,
            "files_resumed": self.resumed,
            "files_retried": self.retried,
            "animated_first_frame": self.animated,
            "ignored_non_images": self.ignored,
            "unlisted_folders": [{"folder": f, "reason": r} for f, r in self.unlisted],
            "duplicates_skipped": self.duplicates,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": None if self.rate is None else round(self.rate, 2),
            "reports": [str(p) for p in self.reports],
            "html": None if self.html is None else str(self.html),
            **self.tallies.to_dict(),
        }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _no_images(roots: Sequence[Path | str], stats: DiscoveryStats) -> DataError:
    where = ", ".join(str(r) for r in roots)
    seen = f"; ignored {_plural(stats.ignored, 'file')} of other types" if stats.ignored else ""
    if stats.unlisted:
        seen += f"; could not list {_plural(len(stats.unlisted), 'folder')}"
    return DataError(
        f"no images found in {where}{seen}",
        hint="looked for " + " ".join(sorted(IMAGE_EXTENSIONS)) + " (any case), recursively",
    )


def _count_in_background(
    roots: Sequence[Path], done: set[str], progress: ScanProgress, stop: threading.Event
) -> threading.Thread:
    """Count the files to do while scanning starts, so the bar gets a total and an ETA."""

    def count() -> None:
        total = count_pending(roots, done, stop)
        if not stop.is_set():
            progress.set_total(total)

    thread = threading.Thread(target=count, name="dfscan-count", daemon=True)
    thread.start()
    return thread


def run_scan(
    options: ScanOptions,
    progress: ScanProgress | None = None,
    notify: Callable[[str], None] = lambda message: None,
    detector: Detector | None = None,
) -> ScanResult:
    """Scan the folders, write the reports, return the tallies.

    ``notify`` receives warnings (e.g. CUDA fell back to the CPU) as soon as they are known.
    Raises ``DataError``/``ModelError``/``DeviceError`` for what the user must fix; an
    unreadable image is never an exception, it is a row with an error.
    """
    sources = [str(f) for f in options.folders]
    uris = [s for s in sources if is_uri(s)]
    engine = options.engine if options.engine != "auto" else ("ray" if uris else "local")
    if uris and engine == "local":
        raise DataError("URI sources are read by the Ray engine", hint="pass --engine ray")
    local = [Path(s) for s in sources if not is_uri(s)]
    roots = check_roots(local) if local else []
    for uri in uris:
        check_uri(uri)
    check_reports(_path(options.csv), _path(options.jsonl), options.existing)
    if options.batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {options.batch_size}")
    html = _path(options.html)
    if html is not None and html.is_dir():
        raise DataError(f"--html path is a folder: {options.html}")
    if options.retry_errors and options.existing != "resume":
        raise DataError("--retry-errors continues a report: pass it with --resume")
    # (with Ray the actors score; the driver's session only reads the model's metadata)
    device = "cpu" if engine == "ray" else options.device
    options.model = resolve_model(options.model, notify)
    detector = detector or Detector.from_onnx(options.model, device, notify=notify)
    model_sha256 = file_sha256(options.model)
    if detector.warning:
        notify(detector.warning)
    threshold = detector.threshold if options.threshold is None else options.threshold
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold must be between 0 and 1, got {threshold}")

    stats = DiscoveryStats()
    files = itertools.chain(
        discover(roots, stats) if roots else (), *(discover_uri(u, stats) for u in uris)
    )
    first = next(files, None)
    if first is None:
        raise _no_images(sources, stats)

    plan = _Plan(
        detector, threshold, model_sha256, roots, bool(uris), stats, itertools.chain([first], files)
    )
    ray_engine = _start_ray(options) if engine == "ray" else None  # before any file is touched
    try:
        return _scan(options, plan, ray_engine, progress, notify)
    finally:
        if ray_engine is not None:
            ray_engine.close()


@dataclass
class _Plan:
    """What the checks established, before any report is opened."""

    detector: Detector
    threshold: float
    model_sha256: str
    roots: Sequence[Path]  # local folders (counted in the background for the progress bar)
    remote: bool  # some sources are URIs
    stats: DiscoveryStats
    files: Iterator[Found]  # everything discovered, the first already checked to exist


def _scan(
    options: ScanOptions,
    plan: _Plan,
    ray_engine: Any,
    progress: ScanProgress | None,
    notify: Callable[[str], None],
) -> ScanResult:
    detector, threshold, model_sha256 = plan.detector, plan.threshold, plan.model_sha256
    tallies = Tallies()
    page = ReportCollector() if options.html is not None else None

    def count(row: Row) -> None:
        tallies.add(row)
        if page is not None:
            page.add(row)

    reports = open_reports(
        _path(options.csv),
        _path(options.jsonl),
        options.existing,
        threshold,
        model_sha256,
        count,
        retry_errors=options.retry_errors,
    )
    result = ScanResult(
        tallies,
        threshold,
        _model(options),
        detector.meta.arch,
        detector.provider,
        model_sha256=model_sha256,
        resumed=reports.resumed,
        retried=reports.retried,
        reports=[w.path for w in reports.writers],
    )
    _stream_into(options, plan, ray_engine, progress, reports, count, result, notify)
    html = _path(options.html)
    if page is not None and html is not None:
        result.html = write_html(page, _run_info(page, result), html)
    return result


def _stream_into(
    options: ScanOptions,
    plan: _Plan,
    ray_engine: Any,
    progress: ScanProgress | None,
    reports: OpenedReports,
    count: Callable[[Row], None],
    result: ScanResult,
    notify: Callable[[str], None],
) -> None:
    """Score what the reports do not hold yet, writing and counting each row as it comes."""
    threshold, model_sha256 = plan.threshold, plan.model_sha256
    for path in reports.repaired:
        notify(f"{path}: dropped its last row, cut mid-write; that file is scanned again")

    stop = threading.Event()
    if progress is not None:
        progress.start()
        if not plan.remote:  # (remote listings are not counted twice)
            _count_in_background(plan.roots, reports.done, progress, stop)
    todo: Iterable[Found] = (f for f in plan.files if f.path not in reports.done)
    start = time.perf_counter()
    if ray_engine is not None:
        stream, close = ray_engine.score(todo), lambda: None
    else:
        stream, close = local_stream(
            todo, plan.detector, options.batch_size, options.workers, options.provenance
        )
    try:
        for scored in stream:
            row = Row.from_scored(scored, threshold, model_sha256)
            reports.write(row)
            count(row)
            result.scanned += 1
            result.animated += scored.animated
            if progress is not None:
                progress.advance()
        stop.set()
        if progress is not None:  # the bar ends full even if the count has not finished
            progress.set_total(result.scanned)
    finally:
        stop.set()
        close()  # stops the decoding pool (or Ray) now, also on Ctrl-C
        reports.close()
        result.elapsed_s = time.perf_counter() - start
        result.ignored, result.unlisted = plan.stats.ignored, plan.stats.unlisted
        result.duplicates = plan.stats.duplicates


def _start_ray(options: ScanOptions) -> Any:
    """The Ray engine (started or joined): the same rows, scored by an actor pool."""
    from dataclasses import replace

    from .engine_ray import RayEngine
    from .options import RayOptions

    settings = replace(
        options.ray or RayOptions(), batch_size=options.batch_size, provenance=options.provenance
    )
    return RayEngine(_model(options).read_bytes(), settings)


def _run_info(page: ReportCollector, result: ScanResult) -> RunInfo:
    run = page.run_info(str(result.model))
    run.facts += [
        ("arch", result.arch),
        ("provider", result.provider),
        ("scanned by this run", str(result.scanned)),
        ("from an earlier run", str(result.resumed)),
        ("time", f"{result.elapsed_s:.1f} s"),
        ("rate", "–" if result.rate is None else f"{result.rate:.1f} images/s"),
        ("reports", ", ".join(map(str, result.reports)) or "–"),
    ]
    if result.duplicates:
        run.facts.append(("duplicate files skipped", str(result.duplicates)))
    return run

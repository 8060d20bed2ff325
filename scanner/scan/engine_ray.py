"""``--engine ray``: the same scan with Ray Data, on this machine or a Ray cluster.

The driver lists the sources (streamed), skips what the reports already hold, and hands the
files to Ray Data in chunks of :data:`CHUNK` paths; ``map_batches`` runs :class:`ScoreActor`
over an actor pool (``compute=ActorPoolStrategy(size=workers)``), each actor holding one ONNX
Runtime session. Actors read the bytes themselves (a local path or an fsspec URI), decode and
prepare them with the same :mod:`dfscan.scanner.model.preprocess` code as the local engine, read the
provenance hints from the same bytes, and send back small result records (never pixels). The
driver turns them into the same :class:`~dfscan.scanner.scan.reports.Row` and writes them with the
same report writers as they stream in, so ``--resume`` works the same and an interrupted scan
keeps every row written.

Rows come back in completion order, not discovery order (reports are keyed by path). A file
that fails is an error row; a failure of the engine itself stops the scan.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ..errors import DataError
from .discovery import Found
from .pipeline import Scored
from .sources import require

CHUNK = 4096  # paths per Ray Data dataset: bounds the driver's memory, amortises start-up


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray on this machine; "auto"; ray://…
    workers: int | None = None  # actors, each with one ORT session; None: the CPUs / per worker
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 32
    provenance: bool = True


def _record(
    path: str, generator: str, p: float | None, info: tuple, error: str | None, cells: tuple
) -> str:
    width, height, fmt, animated = info
    return json.dumps([path, generator, p, width, height, fmt, animated, error, *cells])


class ScoreActor:
    """One ORT session per actor; decodes, scores and reads provenance for a batch of files."""

    def __init__(self, model: bytes, device: str, threads: int, provenance: bool) -> None:
        from ..model.detector import Detector

        if not isinstance(model, bytes):  # an ObjectRef, when Ray hands it over unresolved
            import ray

            model = ray.get(model)
        fd, name = tempfile.mkstemp(suffix=".onnx", prefix="dfscan-actor-")
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        try:
            self.detector = Detector.from_onnx(name, device, threads=threads)
        finally:
            os.unlink(name)
        self.provenance = provenance

    def _decode(self, path: str, problem: str | None) -> tuple[Any, tuple, str | None, tuple]:
        """(pixels or None, (width, height, format, animated), error, provenance cells)."""
        from ..model.preprocess import decode_prepared
        from ..provenance.read import read_provenance
        from .sources import read_bytes

        none = (None, None, None, False)
        if problem is not None:
            return None, none, problem, (None, None)
        try:
            data = read_bytes(path)
        except OSError as exc:
            return None, none, f"cannot read file: {exc.strerror or exc}", (None, None)
        cells: tuple = (None, None)
        if self.provenance:
            prov = read_provenance(io.BytesIO(data))
            cells = (prov.label, prov.detail_json())
        cfg = self.detector.meta.preprocess
        try:
            pixels, info = decode_prepared(data, cfg)
        except DataError as exc:
            return None, none, exc.message, cells
        except Exception as exc:  # Pillow raises odd types (struct.error, IndexError) on bad files
            return None, none, f"not a readable image: {type(exc).__name__}: {exc}", cells
        return pixels, (info.width, info.height, info.format, info.animated), None, cells

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        import numpy as np

        items = [json.loads(str(x)) for x in batch["item"]]
        decoded = [self._decode(path, problem) for path, _, problem in items]
        images = [d[0] for d in decoded if d[0] is not None]
        scores = iter(self.detector.run(images) if images else ())
        out = []
        for (path, generator, _), (pixels, info, error, cells) in zip(items, decoded, strict=True):
            p = None
            if pixels is not None:
                p = float(next(scores))
                if not np.isfinite(p):
                    p, error = None, "the model returned no valid score (NaN)"
            out.append(_record(path, generator, p, info, error, cells))
        return {"result": out}


def _scored(record: str) -> tuple[Scored, tuple[str | None, str | None]]:
    path, generator, p, width, height, fmt, animated, error, label, detail = json.loads(record)
    return Scored(path, generator, p, width, height, fmt, bool(animated), error), (label, detail)


class RayEngine:
    """Starts (or joins) Ray, scores streams of files; ``close`` shuts down what it started."""

    def __init__(self, model: bytes, options: RayOptions) -> None:
        require("ray")
        import ray
        import ray.data  # (configures its loggers on import: quiet them after)

        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if options.address is None:  # a local Ray on this machine's cores
                from ..model.runtime import available_cores

                wanted = (options.workers or 1) * options.cpus_per_worker
                kwargs["num_cpus"] = max(available_cores(), round(wanted))
            else:
                kwargs["address"] = options.address
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise DataError(f"cannot start or join Ray: {exc}") from exc
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        if hasattr(context, "print_on_execution_start"):
            context.print_on_execution_start = False
        if options.workers is None:
            cpus = float(ray.cluster_resources().get("CPU", 1))
            options.workers = max(1, int(cpus // max(options.cpus_per_worker, 1e-3)))
        self.options = options
        self.model_ref = ray.put(model)

    def score(
        self, files: Iterable[Found]
    ) -> Iterator[tuple[Scored, tuple[str | None, str | None]]]:
        import ray

        o = self.options
        device = "cuda" if o.gpus_per_worker > 0 else "cpu"
        threads = max(1, int(o.cpus_per_worker))
        it = iter(files)
        while True:
            chunk = list(islice(it, CHUNK))
            if not chunk:
                return
            items = [{"item": json.dumps([f.path, f.generator, f.problem])} for f in chunk]
            ds = ray.data.from_items(items).map_batches(
                ScoreActor,
                fn_constructor_args=(self.model_ref, device, threads, o.provenance),
                batch_size=o.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=max(1, o.workers or 1)),  # set in __init__
                num_cpus=o.cpus_per_worker,
                num_gpus=o.gpus_per_worker or None,
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for record in batch["result"]:
                    yield _scored(str(record))

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()

"""``--engine ray``: the same scan with Ray Data, on this machine or a Ray cluster.

The driver lists the sources (streamed), skips what the reports already hold, and hands the
files to Ray Data in chunks of :data:`CHUNK` paths; ``map_batches`` runs :class:`ScoreActor`
over an actor pool (``compute=ActorPoolStrategy(size=workers)``), each actor holding one ONNX
Runtime session. Actors read the bytes themselves (a local path or an fsspec URI) and run the
local engine's own core on them (:mod:`.core`: decode, provenance, batched scoring), then send
back each file's :class:`~dfscan.scanner.scan.core.Scored` as a record keyed by its fields
(never pixels). The driver turns them into the same :class:`~dfscan.scanner.scan.reports.Row`
and writes them with the same report writers as they stream in, so ``--resume`` works the same
and an interrupted scan keeps every row written.

Rows come back in completion order, not discovery order (reports are keyed by path). A file
that is not a usable image is an error row, as in the local engine; any other exception in an
actor (a bug, a model or device the actor cannot load) is sent back and raised again on the
driver as itself, so it stops the scan exactly as it stops a local one: a bug exits 70, a
``DfscanError`` with its own code and message.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from itertools import islice
from typing import Any, NoReturn

from ..errors import DataError
from ..model.detector import Detector
from .core import Scored, read_and_decode, score_batch
from .discovery import Found
from .options import RayOptions  # (declared there with its defaults and help)
from .sources import require

CHUNK = 4096  # paths per Ray Data dataset: bounds the driver's memory, amortises start-up
_FAILURE = "failure"  # the key of the record an actor sends back instead of a batch's rows


def _failure_record(exc: BaseException) -> str:
    """What stopped an actor, for the driver to raise again: the exception itself (pickled,
    as Ray sends everything) and its traceback as text (tracebacks do not pickle)."""
    try:
        payload = pickle.dumps(exc).hex()
    except Exception:  # an exception holding something unpicklable: its type and message
        payload = None
    return json.dumps(
        {
            _FAILURE: payload,
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    )


def _raise_failure(record: dict[str, Any]) -> NoReturn:
    """Raise the exception an actor sent back, with its traceback as a note (``--debug``)."""
    exc: BaseException
    try:
        exc = pickle.loads(bytes.fromhex(record[_FAILURE]))
    except Exception:  # not sent, or its class cannot be rebuilt here
        exc = RuntimeError(f"{record['type']}: {record['message']}")
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note("raised in a Ray actor:\n" + record["traceback"].rstrip())
    raise exc


class ScoreActor:
    """One ORT session per actor; decodes, scores and reads provenance for a batch of files.

    No exception is left to Ray: it would wrap it in its own (losing the type the CLI reads the
    exit code from), or restart an actor whose constructor failed. It goes back as a failure
    record instead, and the driver raises it.
    """

    def __init__(self, model: bytes, device: str, threads: int, provenance: bool) -> None:
        self.provenance = provenance
        self.failure: Exception | None = None
        try:
            self.detector = self._load(model, device, threads)
        except Exception as exc:  # sent back with each batch: the driver stops on the first
            self.failure = exc

    @staticmethod
    def _load(model: Any, device: str, threads: int) -> Detector:
        if not isinstance(model, bytes):  # an ObjectRef, when Ray hands it over unresolved
            import ray

            model = ray.get(model)
        fd, name = tempfile.mkstemp(suffix=".onnx", prefix="dfscan-actor-")
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        try:
            return Detector.from_onnx(name, device, threads=threads)
        finally:
            os.unlink(name)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        try:
            if self.failure is not None:
                raise self.failure
            files = [Found(**json.loads(str(item))) for item in batch["item"]]
            cfg = self.detector.meta.preprocess
            decoded = [read_and_decode(found, cfg, self.provenance) for found in files]
            scored = score_batch(decoded, self.detector)
            return {"record": [json.dumps(s.to_record()) for s in scored]}
        except Exception as exc:
            return {"record": [_failure_record(exc)]}


def received(text: str) -> Scored:
    """One record from an actor: a file's outcome, or the failure that stops the scan."""
    record = json.loads(text)
    if _FAILURE in record:
        _raise_failure(record)
    return Scored.from_record(record)


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

    def score(self, files: Iterable[Found]) -> Iterator[Scored]:
        import ray

        o = self.options
        device = "cuda" if o.gpus_per_worker > 0 else "cpu"
        threads = max(1, int(o.cpus_per_worker))
        it = iter(files)
        while True:
            chunk = list(islice(it, CHUNK))
            if not chunk:
                return
            items = [{"item": json.dumps(asdict(found))} for found in chunk]
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
                for record in batch["record"]:
                    yield received(str(record))

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()

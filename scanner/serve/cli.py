"""``dfscan serve``: the thin terminal layer; the work is in plain functions tests call.

Imports nothing heavy at module level (the root CLI imports this to register the command):
ONNX Runtime, FastAPI and uvicorn are imported when the command runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ..cli.options import from_field, with_field_options
from ..cli.support import device_option, err_console, report_errors
from ..errors import DataError, ExitCode, MissingExtra, exit_codes_help
from .settings import MIB, SERVE, ServeSettings

if TYPE_CHECKING:
    from .service import Service

KEY_ENV = "DFSCAN_API_KEY"
SERVE_EXTRA = ("fastapi", "uvicorn", "python_multipart")

# The codes ``dfscan serve`` can end with (its help lists them); Ctrl-C is a graceful stop, 0.
SERVE_EXIT_CODES = (
    ExitCode.OK,
    ExitCode.USAGE,
    ExitCode.MISSING_EXTRA,
    ExitCode.MODEL,
    ExitCode.DEVICE,
    ExitCode.BUG,
)
SERVE_HELP = (
    "Serve the detector over HTTP: POST /v1/scan (images → one scan row each), GET /v1/model, "
    "/healthz, /readyz, /metrics (Prometheus), a page at / to drop images on, docs at /docs.\n\n"
    "Concurrent requests are batched into ONNX Runtime runs (--max-batch, --max-wait-ms). "
    "Safe by default: it listens on 127.0.0.1; another address needs an API key "
    f"(--api-key-file, or ${KEY_ENV}), checked in constant time. Uploads stay in memory, "
    "within --max-body-mb, --max-files, --max-pixels, --max-requests and --max-queued (413, "
    "429, 503 with a JSON error beyond them).\n\n"
    + exit_codes_help(
        SERVE_EXIT_CODES,
        {
            ExitCode.OK: "stopped",
            ExitCode.USAGE: "bad arguments (a non-loopback --host without a key)",
            ExitCode.MISSING_EXTRA: "the \\[serve] extra is missing "
            '(pip install "dfscan\\[serve]"), or the one the built-in detector\'s first '
            "assembly needs",
        },
    )
)

ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="A .onnx detector written by dfscan export (default: the built-in detector).",
    ),
]
HostOpt = Annotated[
    str, typer.Option(help="Address to listen on; other than loopback needs an API key.")
]
PortOpt = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free).")]
KeyFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--api-key-file",
        help=f"File holding the API key clients must send (default: ${KEY_ENV}, if set).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str, device_option(help="auto: CUDA when it works, else CPU (with a warning).")
]
WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="Decoding threads (default: one per core).")
]
ProvenanceOpt = Annotated[
    bool,
    typer.Option(
        "--provenance/--no-provenance", help="Read what files declare (C2PA, XMP, PNG, EXIF)."
    ),
]


class ServeEngine(str, Enum):
    local = "local"
    ray = "ray"


EngineOpt = Annotated[
    ServeEngine,
    typer.Option(
        help="local: one process (uvicorn); ray: a Ray Serve deployment of --replicas copies "
        'of the same app, one ONNX Runtime session each (pip install "dfscan\\[serve-ray]").',
    ),
]
ReplicasOpt = Annotated[int, typer.Option(min=1, help="--engine ray: replicas of the app.")]
CpusPerReplicaOpt = Annotated[
    float,
    typer.Option(min=0.1, help="--engine ray: CPUs per replica (its ORT and decoding threads)."),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(help="--engine ray: 'auto' or ray://HOST:PORT (default: start a local Ray)."),
]
AccessLogOpt = Annotated[
    bool, typer.Option("--access-log/--no-access-log", help="Log one line per request.")
]


def require_serve() -> None:
    """MissingExtra (exit 3) with the pip command when the ``[serve]`` extra is missing."""
    import importlib.util

    missing = [m for m in SERVE_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(
            f"dfscan serve needs {', '.join(missing)}, not installed",
            hint='pip install "dfscan[serve]"',
        )


def resolve_model(
    model: Path | None, notify: Callable[[str], None]
) -> tuple[Path, dict[str, Any] | None]:
    """(the .onnx file to serve, its model card or None): the one given, else the built-in
    detector with its card."""
    if model is not None:
        return Path(model), None
    from ..model import builtin

    return builtin.builtin_model(notify), builtin.load_part().card


def read_api_key(key_file: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The key from ``--api-key-file`` (surrounding whitespace stripped), else ``$DFSCAN_API_KEY``;
    None when neither is given. An empty key is an error, never "no key"."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read --api-key-file {key_file}: {exc}") from None
        if not key:
            raise DataError(f"--api-key-file {key_file} is empty")
        return key
    value = env.get(KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise DataError(f"${KEY_ENV} is set but empty")
    return value.strip()


def check_host(host: str, key: str | None) -> None:
    """Refuse to listen beyond this machine without a key (DataError, exit 2)."""
    from .limits import is_loopback

    if key is None and not is_loopback(host):
        raise DataError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use "
            "the server",
            hint=f"pass --api-key-file FILE or set ${KEY_ENV}, or listen on 127.0.0.1",
        )


def build_service(
    model: Path | None,
    *,
    api_key: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    max_batch: int = SERVE.max_batch,
    max_wait_ms: float = SERVE.max_wait_ms,
    workers: int | None = None,
    limits: Any = None,
    provenance: bool = True,
    notify: Callable[[str], None] = lambda message: None,
) -> Service:
    """Load the model and make the service the app serves (no threads started yet);
    ``threads``: ONNX Runtime's intra-op threads (None: its default)."""
    from ..model.builtin import file_sha256
    from ..model.detector import Detector
    from .limits import Limits
    from .service import Service

    path, card = resolve_model(model, notify)
    detector = Detector.from_onnx(path, device, threads, notify=notify)
    if detector.warning:
        notify(detector.warning)
    return Service(
        detector=detector,
        model_path=path,
        model_sha256=file_sha256(path),
        limits=limits or Limits(),
        api_key=api_key,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        workers=workers,
        provenance=provenance,
        card=card,
    )


def run_server(service: Service, host: str, port: int, access_log: bool = True) -> None:
    """Serve until interrupted (uvicorn handles SIGINT/SIGTERM: a graceful stop)."""
    import uvicorn

    from .app import create_app

    uvicorn.run(
        create_app(service),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )


def build_replica_service(path: Path, card: dict[str, Any] | None, **options: Any) -> Service:
    """A Ray Serve replica's Service: :func:`build_service` on the driver's resolved model
    (with its card), run in the replica's process."""
    service = build_service(path, **options)
    service.card = card
    return service


def serve_on_ray(
    model: Path | None,
    *,
    host: str,
    port: int,
    key: str | None,
    device: str,
    max_batch: int,
    max_wait_ms: float,
    workers: int | None,
    limits: Any,
    provenance: bool,
    replicas: int,
    cpus_per_replica: float,
    address: str | None,
    block: bool = True,
) -> Any:
    """``--engine ray``: the same app as a Ray Serve deployment; serves until interrupted
    (``block``), else returns the running :class:`~dfscan.scanner.serve.ray_deploy.RayServer`."""
    import functools

    from . import ray_deploy

    ray_deploy.require_ray_serve()
    path, card = resolve_model(model, _warn)
    if not path.is_file():
        raise DataError(f"model not found: {path}")
    per_replica = max(1, int(cpus_per_replica))  # ORT and decoding threads of each replica
    build = functools.partial(
        build_replica_service,
        path.resolve(),
        card,
        api_key=key,
        device=device,
        threads=per_replica,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        workers=workers or per_replica,
        limits=limits,
        provenance=provenance,
    )
    options = ray_deploy.RayServeOptions(
        replicas=replicas,
        cpus_per_replica=cpus_per_replica,
        gpus_per_replica=1.0 if device.startswith("cuda") else 0.0,
        address=address,
        max_requests=limits.max_requests,
    )
    server = ray_deploy.start(build, options, host, port)
    if not block:
        return server
    err_console.print(
        f"serving {escape(path.name)} on Ray Serve: {replicas} replica(s), "
        f"page at {escape(server.url)}/, API docs at /docs" + ("; API key required" if key else ""),
        highlight=False,
    )
    ray_deploy.serve_forever(server)
    return None


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


@report_errors
@with_field_options
def serve(
    model: ModelOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    api_key_file: KeyFileOpt = None,
    device: DeviceOpt = "auto",
    max_batch: int = from_field(ServeSettings),
    max_wait_ms: float = from_field(ServeSettings),
    workers: WorkersOpt = None,
    max_body_mb: float = from_field(ServeSettings),
    max_files: int = from_field(ServeSettings),
    max_pixels: int = from_field(ServeSettings),
    max_requests: int = from_field(ServeSettings),
    max_queued: int = from_field(ServeSettings),
    provenance: ProvenanceOpt = True,
    access_log: AccessLogOpt = True,
    engine: EngineOpt = ServeEngine.local,
    replicas: ReplicasOpt = 2,
    cpus_per_replica: CpusPerReplicaOpt = 1.0,
    ray_address: RayAddressOpt = None,
) -> None:
    """Serve the detector over HTTP (see SERVE_HELP)."""
    require_serve()
    key = read_api_key(api_key_file)
    check_host(host, key)
    from .limits import Limits

    limits = Limits(
        max_body_bytes=int(max_body_mb * MIB),
        max_files=max_files,
        max_pixels=max_pixels,
        max_requests=max_requests,
        max_queued_images=max_queued,
    )
    if engine == ServeEngine.ray:
        serve_on_ray(
            model,
            host=host,
            port=port,
            key=key,
            device=device,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            workers=workers,
            limits=limits,
            provenance=provenance,
            replicas=replicas,
            cpus_per_replica=cpus_per_replica,
            address=ray_address,
        )
        return
    service = build_service(
        model,
        api_key=key,
        device=device,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        workers=workers,
        limits=limits,
        provenance=provenance,
        notify=_warn,
    )
    err_console.print(
        f"serving {escape(service.model_path.name)} (sha256 {service.model_sha256[:12]}, "
        f"threshold {service.threshold:g}) on {escape(service.detector.provider)}; "
        f"page at http://{escape(host)}:{port}/, API docs at /docs"
        + ("; API key required" if key else ""),
        highlight=False,
    )
    run_server(service, host, port, access_log)

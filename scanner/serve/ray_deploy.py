"""``dfscan serve --engine ray``: the same app as a Ray Serve deployment, one ORT session per
replica.

Nothing of the server is copied: each replica builds a
:class:`~dfscan.scanner.serve.service.Service` (its own ONNX Runtime session, batcher,
decoding threads, limits and key) with the command's
:func:`~dfscan.scanner.serve.cli.build_service`, and Ray Serve's ingress runs
:func:`~dfscan.scanner.serve.app.create_app` over it (the app's lifespan starts and stops the
service's threads, as under uvicorn). Ray Serve's proxy listens on ``host:port`` and spreads
requests over the replicas; the key, the limits and the loopback rule are the local server's.

Each replica counts its own ``/metrics`` (the answer comes from whichever replica took the
request). The model file is read by each replica from the path given, so on a multi-node
cluster it must be at that path on every node.

Importing this module imports neither Ray nor FastAPI; :func:`start` does.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DataError, MissingExtra, first_line

if TYPE_CHECKING:
    from .service import Service

APP_NAME = "dfscan"
RAY_SERVE_HINT = 'pip install "dfscan[serve-ray]"'


def require_ray_serve() -> None:
    """MissingExtra (exit 3) naming the pip install when Ray Serve cannot be imported (``ray``
    alone, without ``ray[serve]``'s dependencies, is not enough)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise MissingExtra(
            "dfscan serve --engine ray needs ray, not installed", hint=RAY_SERVE_HINT
        )
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            f"dfscan serve --engine ray needs Ray Serve ({first_line(exc)})", hint=RAY_SERVE_HINT
        ) from None


@dataclass(frozen=True)
class RayServeOptions:
    replicas: int = 2
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    address: str | None = None  # None: start a local Ray
    max_requests: int = 64  # requests a replica takes at once (the app answers 429 beyond)
    extra_init: dict[str, Any] = field(default_factory=dict)


class Replica:
    """One Ray Serve replica: the Service, built in the replica's process by ``build`` (pickled
    by reference: the command's ``build_service`` with its options), and the app over it.

    ``__serve_build_asgi_app__`` is Ray Serve's late-bound ingress hook: it is called after
    ``__init__`` in the replica, so the app is ``create_app`` over this replica's own Service.
    """

    def __init__(self, build: Callable[[], Service]) -> None:
        logging.getLogger("dfscan.serve").setLevel(logging.WARNING)
        self.service = build()

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app

        return create_app(self.service)


def deployment(build: Callable[[], Service], options: RayServeOptions) -> Any:
    """The bound Ray Serve application: ``options.replicas`` copies of :class:`Replica`."""
    from ray import serve

    actor: dict[str, Any] = {"num_cpus": options.cpus_per_replica}
    if options.gpus_per_replica > 0:
        actor["num_gpus"] = options.gpus_per_replica
    dep: Any = serve.deployment(  # typed as a decorator factory; called with the class it is one
        serve.ingress()(Replica),
        name="dfscan",
        num_replicas=options.replicas,
        ray_actor_options=actor,
        # Let every request the app would take reach it: the app answers 429/503 itself.
        max_ongoing_requests=options.max_requests,
    )
    return dep.bind(build)


def _port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DataError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now on ``host`` (Ray Serve's proxy cannot take port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RayServer:
    """A running deployment: ``url``; ``stop`` deletes it (and the Ray it started)."""

    url: str
    started_ray: bool

    def stop(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        if self.started_ray:
            ray.shutdown()


def start(
    build: Callable[[], Service],
    options: RayServeOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> RayServer:
    """Start (or join) Ray, Ray Serve's proxy on ``host:port`` and the replicas; returns when
    every replica is up (its model loaded)."""
    require_ray_serve()
    port = port or free_port(host)
    _port_free(host, port)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home
    import ray
    from ray import serve

    for name in ("ray", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            **options.extra_init,
        }
        if options.address is not None:
            kwargs["address"] = options.address
        elif "num_cpus" not in kwargs:
            from ..model.runtime import available_cores

            kwargs["num_cpus"] = max(
                available_cores(), round(options.replicas * options.cpus_per_replica)
            )
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DataError(f"cannot start or join Ray: {exc}") from exc
    server = RayServer(f"http://{_url_host(host)}:{port}", started)
    try:
        serve.start(
            http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"}
        )
        serve.run(deployment(build, options), name=APP_NAME, route_prefix="/")
    except BaseException:
        server.stop()
        raise
    return server


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def serve_forever(server: RayServer, poll_s: float = 1.0) -> None:
    """Block until Ctrl-C (or SIGTERM), then delete the deployment."""
    import signal

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        while True:
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()

"""The FastAPI app: routes, the API key, the request limits and the JSON error shape.

Every answer that is not a success is ``{"error": message, "status": code}``: 400 unreadable
request, 401 missing or wrong key, 404/405, 413 too large (body, files), 415 not an image or
multipart body, 422 bad query value, 429 too many requests at once, 503 too many images queued
(or shutting down). A 500 is only ever a bug in dfscan, and an unreadable image is never one:
it is a result with ``error``, as in a scan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from . import uploads
from .batcher import InferenceFailed
from .limits import key_matches
from .metrics import CONTENT_TYPE
from .service import Service

log = logging.getLogger("dfscan.serve")

ROUTES = ("/v1/scan", "/v1/model", "/healthz", "/readyz", "/metrics", "/", "/static", "/docs")
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


class ScanResult(BaseModel):
    """One image's result: the fields of a ``dfscan scan`` row (``name`` for its path)."""

    name: str
    p_fake: float | None
    verdict: str | None
    threshold: float
    model_sha256: str
    width: int | None
    height: int | None
    format: str | None
    error: str | None
    provenance: str | None
    provenance_detail: Any = None


class ScanResponse(BaseModel):
    results: list[ScanResult]
    model_sha256: str
    threshold: float


class ErrorBody(BaseModel):
    error: str
    status: int


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, reason: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in (
        (400, "Unreadable request (empty body, malformed multipart)"),
        (401, "Missing or wrong API key"),
        (413, "Body or number of files over the server's limits"),
        (415, "Neither multipart/form-data nor an image body"),
        (429, "Too many requests at once; retry after Retry-After seconds"),
        (503, "Too many images queued; retry after Retry-After seconds"),
    )
}
_SCAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _route_label(path: str) -> str:
    if path.startswith("/static/"):
        return "/static"
    if path.startswith("/docs") or path == "/openapi.json":
        return "/docs"
    return path if path in ROUTES else "other"


class _CountRequests:
    """ASGI middleware: every answer counted by route and status code (for /metrics)."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = _route_label(scope.get("path", ""))
            self.service.metrics.requests.inc(1, route, str(status["code"]))


def _read_static(name: str) -> bytes:
    return (resources.files("dfscan.scanner.serve") / "static" / name).read_bytes()


def create_app(service: Service) -> FastAPI:
    """The app over ``service``; its lifespan starts and stops the service's threads."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="dfscan",
        version=__version__,
        summary="Tell real photos from generated images: the scanner behind an HTTP API.",
        lifespan=lifespan,
    )
    app.add_middleware(_CountRequests, service=service)
    page = {name: _read_static(name) for name in ("index.html", *STATIC)}
    metrics = service.metrics

    def check_key(request: Request) -> None:
        if service.api_key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if not key_matches(given, service.api_key):
            metrics.rejected.inc(1, "unauthorized")
            what = "missing" if given is None else "wrong"
            raise ApiError(
                401,
                f"{what} API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error(422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error (a bug) on %s", request.url.path)
        return _error(500, f"internal error (a bug): {type(exc).__name__}")

    @app.post(
        "/v1/scan",
        response_model=ScanResponse,
        responses=_ERRORS,
        openapi_extra=_SCAN_BODY,
        summary="Score images: one result per image, with the fields of a scan row",
    )
    async def scan(
        request: Request,
        threshold: Annotated[
            float | None,
            Query(ge=0.0, le=1.0, description="Flag as fake at p_fake ≥ this (default: model's)"),
        ] = None,
        name: Annotated[
            str | None, Query(max_length=255, description="The name of a raw-body image")
        ] = None,
    ) -> Response:
        """Multipart files (``curl -F file=@a.jpg -F file=@b.png``) or one raw image body
        (``curl --data-binary @a.jpg -H 'Content-Type: image/jpeg'``). An unreadable image is
        a result with ``error``, never a failed request."""
        check_key(request)
        limits = service.limits
        if service.in_flight >= limits.max_requests:
            metrics.rejected.inc(1, "busy")
            raise ApiError(
                429,
                f"too many requests at once (over {limits.max_requests}, --max-requests); "
                "retry later",
                headers={"Retry-After": "1"},
            )
        started = time.perf_counter()
        service.in_flight += 1
        metrics.in_flight.set(service.in_flight)
        try:
            return await _scan(request, threshold, name, started)
        finally:
            service.in_flight -= 1
            metrics.in_flight.set(service.in_flight)

    async def _scan(
        request: Request, threshold: float | None, name: str | None, started: float
    ) -> Response:
        limits = service.limits
        content_type = request.headers.get("content-type")
        try:
            kind = uploads.kind_of(content_type)
            uploads.check_length(request.headers.get("content-length"), limits)
            if kind == "multipart":
                files = await uploads.read_multipart(request.stream(), content_type or "", limits)
            else:
                files = await uploads.read_raw(request.stream(), limits, name or uploads.RAW_NAME)
        except uploads.UploadError as exc:
            metrics.rejected.inc(1, exc.reason)
            return _error(exc.status, exc.message)
        except ClientDisconnect:
            return _error(400, "the client went away before the body was read")
        if not service.batcher.reserve(len(files)):
            metrics.rejected.inc(1, "queue_full")
            return _error(
                503,
                f"too many images queued (over {limits.max_queued_images}, --max-queued); "
                "retry later",
                {"Retry-After": "1"},
            )
        try:
            results = await service.scan(files, threshold)
        except InferenceFailed as exc:
            log.error("%s", exc)
            return _error(503, str(exc), {"Retry-After": "1"})
        metrics.latency.observe(time.perf_counter() - started)
        used = service.threshold if threshold is None else threshold
        body = {"results": results, "model_sha256": service.model_sha256, "threshold": used}
        return JSONResponse(body)

    @app.get("/v1/model", summary="The model: identity, detector spec, card, limits")
    async def model(request: Request) -> dict[str, Any]:
        check_key(request)
        return service.model_info()

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded and the queue has room")
    async def readyz() -> Response:
        if service.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "error": "busy or starting"}, 503)

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus(request: Request) -> Response:
        check_key(request)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    page_headers = {
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(page["index.html"], headers=page_headers)

    def static_route(file: str, media: str) -> Callable[[], Awaitable[Response]]:
        async def serve_file() -> Response:
            return Response(page[file], media_type=media, headers=page_headers)

        return serve_file

    for file, media in STATIC.items():
        app.get(f"/static/{file}", include_in_schema=False)(static_route(file, media))
    return app

"""The API's Prometheus metrics: request latency by route template, and ``GET /metrics``.

The middleware is plain ASGI (no ``BaseHTTPMiddleware``, no per-request objects beyond one
closure): it sits on the hot path of every request. It labels by the route *template*
(``/applications/{application_id}``), which the router leaves in the scope, never by the raw
path, so the number of series stays bounded; requests no route matched share one label.

Several uvicorn workers (``API_WORKERS`` > 1) are separate processes with separate counters.
Then ``main()`` calls ``prepare_multiprocess_metrics`` before the workers start: it points
``PROMETHEUS_MULTIPROC_DIR`` at an empty folder (the caller's, or a fresh temporary one), each
worker writes its samples there, and ``/metrics`` adds them up. With one worker (the default,
and what compose and Kubernetes run: they scale with replicas) none of this happens.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import Metrics, metrics_for

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request, set in the scope by the router."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.record_request(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


def exposition_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` serves: this process's registry, or every worker's samples added up."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=folder)  # type: ignore[no-untyped-call]
    return combined


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter()

    # ``async``: a plain ``def`` would run in a worker thread; the text is quick to generate.
    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = generate_latest(exposition_registry(registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def install_metrics(app: FastAPI, registry: CollectorRegistry = REGISTRY) -> None:
    """Time every request and serve ``GET /metrics`` (left out of the OpenAPI schema)."""
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics_for(registry))
    app.include_router(metrics_router(registry))


def prepare_multiprocess_metrics(workers: int) -> Path | None:
    """Before several workers start: give them an empty shared folder for their samples."""
    if workers <= 1:
        return None
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        # Samples of a previous run would be added to this one's.
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="api-metrics-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # in this process only
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder

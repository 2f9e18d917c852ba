"""The HTTP API's composition root: settings -> pool, blob store, hasher -> routes -> serve.

``create_app(settings)`` builds the app and does no I/O; the lifespan opens the resources
when the server starts and closes them when it stops.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import psycopg_pool
import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api import health
from services.api.admin.announcements import router as announcements_router
from services.api.admin.reports import router as reports_router
from services.api.admin.resources import broker_login_refused
from services.api.admin.routes import router as admin_router
from services.api.applications.accept import Intake, SubmissionFastPath
from services.api.applications.admission import AdmissionLimit, RetryAdvice
from services.api.applications.group_commit import GroupCommit
from services.api.applications.routes import router as applications_router
from services.api.applications.routes import submit_route
from services.api.asyncapi import ASYNCAPI_PATH
from services.api.asyncapi import router as asyncapi_router
from services.api.auth.passwords import Passwords
from services.api.auth.revocation import PostgresTokenVersions
from services.api.auth.routes import router as auth_router
from services.api.auth.seeding import seed_admin
from services.api.auth.tokens import TokenVerifier
from services.api.errors import database_unavailable
from services.api.metrics import install_metrics, prepare_multiprocess_metrics
from services.api.payments.routes import router as payments_router
from services.api.pooling import pooled_connection
from services.api.resources import Resources
from services.api.settings import ApiSettings
from services.api.unsubscribe import router as unsubscribe_router
from shared.blobs import BlobPublisher, BlobStore
from shared.errors import AccessRefused
from shared.logs import configure_logging
from shared.worker import open_pool

SERVICE = "api"
REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
_ID_HEADERS = (REQUEST_ID_HEADER, CORRELATION_ID_HEADER)  # the first one offered wins
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")

log = structlog.get_logger("api")


class RequestIdMiddleware:
    """Each request gets an id (the client's X-Request-ID or X-Correlation-ID, or a new one):
    it is echoed back in both headers, bound to every log line, and becomes the correlation id
    of the events it causes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"])
        candidates = (offered.get(name.encode(), b"").decode("latin-1") for name in _ID_HEADERS)
        request_id = next(
            (found for found in candidates if _ACCEPTABLE_REQUEST_ID.match(found)),
            str(uuid.uuid4()),
        )
        scope.setdefault("state", {})["request_id"] = request_id
        echoed = [(name.encode(), request_id.encode()) for name in _ID_HEADERS]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *echoed]
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=request_id):
            await self.app(scope, receive, send_with_id)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    return database_unavailable(request.url.path, error)


def build_resources(
    settings: ApiSettings,
    pool: psycopg_pool.AsyncConnectionPool,
    passwords: Passwords | None = None,
) -> Resources:
    """What the handlers share, around ``pool`` (opened or not); ``close()`` it at the end."""
    blobs = BlobStore(settings.blob_dir, fsync=settings.blob_fsync)

    def connection() -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return pooled_connection(pool, settings.api_db_overload_wait_seconds)

    return Resources(
        settings=settings,
        pool=pool,
        blobs=blobs,
        blob_publisher=BlobPublisher(blobs, threads=settings.blob_sync_threads),
        passwords=passwords
        or Passwords(settings.password_hash_concurrency, settings.password_hash_queue),
        tokens=TokenVerifier(settings.jwt_secret.get_secret_value()),
        token_versions=PostgresTokenVersions(connection),
        intake=Intake(
            admission=AdmissionLimit(
                settings.api_max_submissions_in_flight,
                RetryAdvice(
                    minimum=settings.api_busy_retry_after_seconds,
                    maximum=settings.api_busy_retry_after_max_seconds,
                ),
            ),
            group_commit=GroupCommit(
                connection,
                outbox_schema=settings.db_role,
                max_rows=settings.api_group_commit_max_rows,
            ),
        ),
    )


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await open_pool(
            settings, settings.db_role, timeout=settings.api_db_pool_timeout_seconds
        )
        resources = build_resources(settings, pool)
        app.state.resources = resources
        try:
            if await seed_admin(resources):
                log.info("administrator created", email=settings.admin_email)
            log.info("started", public_url=settings.public_url, role=settings.db_role)
            yield
        finally:
            resources.close()
            await pool.close()
            log.info("stopped")

    app = FastAPI(
        title="Admissions API",
        summary="Submit applications, follow their progress, pay the fee.",
        description=(
            "The events the system carries behind this API (who publishes and who consumes "
            f"each, with its payload schema) are described at `{ASYNCAPI_PATH}` (AsyncAPI 3.0)."
        ),
        version="1.0.0",
        lifespan=lifespan,
        # Metrics are Prometheus' (services/api/metrics.py); FastAPI's OpenTelemetry hooks
        # would only ask, on every request, whether a provider was configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    # Innermost of our middlewares, so request ids and metrics apply to the fast path too.
    app.add_middleware(SubmissionFastPath, route=submit_route())
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(psycopg_pool.PoolTimeout, _database_unavailable)
    app.add_exception_handler(AccessRefused, broker_login_refused)
    app.include_router(auth_router)
    app.include_router(applications_router)
    app.include_router(payments_router)
    app.include_router(health.router)
    app.include_router(asyncapi_router)
    app.include_router(admin_router)
    app.include_router(reports_router)
    app.include_router(announcements_router)
    app.include_router(unsubscribe_router)
    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker process: settings from the environment."""
    settings = ApiSettings()
    configure_logging(SERVICE, settings.log_level)
    return create_app(settings)


def main() -> None:
    settings = ApiSettings()
    configure_logging(SERVICE, settings.log_level)
    prepare_multiprocess_metrics(settings.api_workers)
    uvicorn.run(
        "services.api.app:create_app_from_env",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        access_log=settings.api_access_log,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,
        timeout_graceful_shutdown=30,
    )

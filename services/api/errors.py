"""Every error answer is JSON ``{"detail": "..."}``, whichever layer refused the request."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = structlog.get_logger("api")


def error_response(
    status_code: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def database_unavailable(path: str, error: Exception) -> JSONResponse:
    """Postgres is down or restarting: a quick 503 the client can retry (with the same
    Idempotency-Key), not a 500 and not a request left hanging."""
    log.warning("database unavailable", path=path, error=str(error))
    return error_response(
        503, "the database is unavailable; try again shortly", headers={"Retry-After": "2"}
    )


def parse_application_id(raw: str) -> uuid.UUID:
    """A malformed id names no application: 404, like someone else's."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found() from None


def not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "application not found")


class ErrorBody(BaseModel):
    """The body of every error answer, for the OpenAPI document."""

    detail: str

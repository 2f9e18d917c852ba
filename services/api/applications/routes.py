"""``/applications``: the fast path that accepts a submission, and the read side."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import Response
from fastapi.routing import APIRoute

from services.api.applications import views
from services.api.applications.accept import accept_submission
from services.api.applications.repository import find_application, list_applications
from services.api.auth.dependencies import CurrentUser, viewer
from services.api.errors import ErrorBody, not_found, parse_application_id
from services.api.resources import Resources, request_id, resources

router = APIRouter(
    prefix="/applications",
    tags=["applications"],
    responses={401: {"model": ErrorBody, "description": "missing, invalid or expired token"}},
)
Deps = Annotated[Resources, Depends(resources)]

# The body is read by our own streaming parser, so FastAPI cannot derive its schema for /docs.
_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["program", "personal_statement"],
                    "properties": {
                        "program": {"type": "string", "maxLength": 200},
                        "personal_statement": {"type": "string"},
                        "files": {
                            "type": "array",
                            "maxItems": 5,
                            "items": {"type": "string", "format": "binary"},
                            "description": "PDF, PNG or JPEG, at most 10 MiB each",
                        },
                    },
                }
            }
        },
    }
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Content-Length is not a number"},
    408: {"model": ErrorBody, "description": "the body stopped arriving; nothing was stored"},
    409: {"description": "Idempotency-Key reused with a different body"},
    413: {"description": "body or a file too large"},
    415: {"description": "a file's declared type is not PDF, PNG or JPEG"},
    422: {"description": "missing field, empty file, more than 5 files"},
    429: {
        "model": ErrorBody,
        "headers": _RETRY_AFTER,
        "description": "too many submissions from this applicant this hour; nothing was stored."
        " Wait Retry-After seconds.",
    },
    503: {
        "model": ErrorBody,
        "headers": _RETRY_AFTER,
        "description": "busy (too many submissions at once) or the database is unavailable:"
        " nothing was stored. Wait Retry-After seconds (add a little random jitter) and send"
        " the same request again with the same Idempotency-Key: you will get exactly one"
        " application, and the answer of the first attempt that got through.",
    },
}
SUBMIT_DESCRIPTION = """Stream the files into the blob store, then one transaction: application,
documents, history and the ``application.submitted`` outbox row. Nothing slow happens before
the 202.

**Retries.** Send an ``Idempotency-Key`` (any 1-255 visible ASCII characters, new for each
new application). A ``503`` means nothing was stored: wait ``Retry-After`` seconds (plus a
little random jitter, so that clients do not come back all at once) and send the same request
with the same key. Whatever happened to earlier attempts, the key yields exactly one
application; a repeat of a request that did get through answers its original ``202`` with
``Idempotent-Replayed: true``. The same key with a different body is a ``409``."""


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=views.SubmissionAccepted,
    openapi_extra=_MULTIPART_BODY,
    responses=_ERRORS,
    description=SUBMIT_DESCRIPTION,
)
async def submit_application(
    request: Request,
    user: CurrentUser,
    deps: Deps,
    correlation_id: Annotated[str, Depends(request_id)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Submit an application (in production ``SubmissionFastPath`` serves this route without
    FastAPI's routing; both run ``accept_submission``)."""
    return await accept_submission(request, deps, user, correlation_id)


def submit_route() -> APIRoute:
    """The documented route of ``POST /applications``: the fast path takes its requests."""
    return next(
        r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is submit_application
    )


@router.get("", response_model=list[views.ApplicationSummary])
async def my_applications(
    user: CurrentUser, deps: Deps, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> list[views.ApplicationSummary]:
    async with deps.connection() as conn:
        rows = await list_applications(conn, user.user_id, limit)
    return [views.summary(row, deps.settings.public_url) for row in rows]


@router.get(
    "/{application_id}",
    response_model=views.ApplicationDetail,
    responses={404: {"description": "no such application, or not yours"}},
)
async def get_application(
    application_id: str, user: CurrentUser, deps: Deps
) -> views.ApplicationDetail:
    async with deps.connection() as conn:
        row = await find_application(
            conn, parse_application_id(application_id), viewer(user), with_statement=True
        )
    if row is None:
        raise not_found()
    return views.detail(row, deps.settings.public_url)


@router.get(
    "/{application_id}/status",
    response_model=views.ApplicationStatusView,
    responses={404: {"description": "no such application, or not yours"}},
)
async def get_status(
    application_id: str, user: CurrentUser, deps: Deps
) -> views.ApplicationStatusView:
    async with deps.connection() as conn:
        row = await find_application(
            conn,
            parse_application_id(application_id),
            viewer(user),
            with_history=True,
            mail_schema=deps.settings.mail_history_schema,
        )
    if row is None:
        raise not_found()
    return views.status_view(row)

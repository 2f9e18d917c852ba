"""``/applications``: the fast path that accepts a submission, and the read side."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
import structlog
from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse

from services.api.applications import views
from services.api.applications.repository import (
    IdempotencyClaim,
    IdempotencyConflict,
    Submission,
    find_application,
    insert_submission,
    list_applications,
)
from services.api.applications.upload import read_submission
from services.api.applications.validation import (
    SubmissionForm,
    SubmissionInvalid,
    fingerprint,
    parse_idempotency_key,
)
from services.api.auth.dependencies import CurrentUser, viewer
from services.api.auth.tokens import Principal
from services.api.errors import ErrorBody, error_response, not_found, parse_application_id
from services.api.rate_limits import limit_submissions
from services.api.resources import Resources, request_id, resources
from services.api.statuses import Status
from shared.events.catalog import ApplicationSubmitted, DocumentRef
from shared.events.envelope import Envelope, new_envelope

log = structlog.get_logger("api.applications")
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
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Content-Length is not a number"},
    409: {"description": "Idempotency-Key reused with a different body"},
    413: {"description": "body or a file too large"},
    415: {"description": "a file's declared type is not PDF, PNG or JPEG"},
    422: {"description": "missing field, empty file, more than 5 files"},
    429: {"description": "too many submissions from this applicant; see Retry-After"},
}


def submitted_event(
    application_id: str, user: Principal, form: SubmissionForm, correlation_id: str
) -> Envelope:
    # Built without re-validation: every field comes from a checked source (the address was
    # validated at registration and travels in our signed token; the documents come from our
    # own parser), and validating an address costs more than the rest of the event.
    payload = ApplicationSubmitted.model_construct(
        application_id=application_id,
        applicant_id=user.user_id,
        applicant_email=user.email,
        program=form.program,
        documents=[
            DocumentRef.model_construct(
                document_id=d.document_id,
                filename=d.filename,
                content_type=d.content_type,
                size=d.size,
                sha256=d.sha256,
            )
            for d in form.documents
        ],
    )
    return new_envelope(payload, correlation_id=correlation_id)


def new_submission(
    user: Principal, form: SubmissionForm, correlation_id: str, public_url: str, key: str | None
) -> Submission:
    """A new application of ``form``: its rows, its event and the answer the client gets."""
    application_id = str(uuid.uuid4())
    return Submission(
        application_id=application_id,
        applicant_id=user.user_id,
        form=form,
        correlation_id=correlation_id,
        event=submitted_event(application_id, user, form, correlation_id),
        answer=views.SubmissionAccepted(
            application_id=application_id,
            status=Status.SUBMITTED,
            status_url=views.status_url(public_url, application_id),
            pay_url=views.pay_url(public_url, application_id),
        ).model_dump(by_alias=True),
        idempotency=IdempotencyClaim(key, fingerprint(form)) if key else None,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=views.SubmissionAccepted,
    openapi_extra=_MULTIPART_BODY,
    responses=_ERRORS,
    dependencies=[Depends(limit_submissions)],  # 429 past the applicant's hourly count
)
async def submit_application(
    request: Request,
    user: CurrentUser,
    deps: Deps,
    correlation_id: Annotated[str, Depends(request_id)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Stream the files into the blob store, then one transaction: application, documents,
    history and the ``application.submitted`` outbox row. Nothing slow happens before 202."""
    try:
        key = parse_idempotency_key(idempotency_key)
        form = await read_submission(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            blobs=deps.blobs,
            limits=deps.upload_limits,
            executor=deps.blob_writers,
        )
    except SubmissionInvalid as refused:
        return error_response(refused.status, refused.detail)

    submission = new_submission(user, form, correlation_id, deps.settings.public_url, key)
    try:
        async with deps.connection() as conn:
            outcome = await insert_submission(conn, deps.outbox_schema, submission)
    except IdempotencyConflict:
        return error_response(
            status.HTTP_409_CONFLICT,
            f"Idempotency-Key {key!r} was already used for a different request;"
            " send a new key for a new application",
        )
    except psycopg.errors.ForeignKeyViolation:
        # A valid token for an account this database does not have (e.g. after a reset).
        return error_response(status.HTTP_401_UNAUTHORIZED, "unknown account; log in again")
    accepted_id = str(outcome.answer["applicationId"])
    headers = {"Location": views.location(accepted_id)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    log.info("application accepted", application_id=accepted_id, replayed=outcome.replayed)
    return JSONResponse(outcome.answer, status_code=status.HTTP_202_ACCEPTED, headers=headers)


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
            conn, parse_application_id(application_id), viewer(user), with_history=True
        )
    if row is None:
        raise not_found()
    return views.status_view(row)

"""``POST /applications``: the accept path, the product's promise (a 202 in milliseconds).

The files stream into the blob store as they arrive; then one statement, shared with the
submissions that arrive meanwhile (``group_commit.py``), writes the application, its
documents, its first history row and its outbox row. Nothing slow happens before the 202.

Two doors lead to ``accept_submission``: the FastAPI route (``routes.py``, which also documents
the endpoint in the OpenAPI schema), and ``SubmissionFastPath``, a plain ASGI middleware that
takes ``POST /applications`` before FastAPI's routing, dependency injection and exception
middleware see it; on the hottest path those cost a fifth of a submission's CPU. The
middlewares outside it (request id, metrics, the 500 handler) still apply.

Floods: an applicant past ``SUBMISSIONS_PER_APPLICANT_PER_HOUR`` gets ``429`` with
``Retry-After`` before anything else happens (``rate_limits.py``); counted here, not as a route
dependency, so that the fast path counts too.

Overload (``admission.py``): a process reads and writes at most
``api_max_submissions_in_flight`` submissions at once. One more is answered at once, before its
body is read, with ``503 Service Unavailable``, ``Retry-After`` (longer the longer the
overload lasts) and a JSON body, rather than queueing for seconds behind the others. A client
that retries with the same Idempotency-Key gets exactly one application.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import structlog
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.applications import views
from services.api.applications.admission import AdmissionLimit
from services.api.applications.group_commit import GroupCommit
from services.api.applications.repository import (
    IdempotencyClaim,
    IdempotencyConflict,
    Submission,
    TokenRevoked,
)
from services.api.applications.upload import read_submission
from services.api.applications.validation import (
    SubmissionForm,
    SubmissionInvalid,
    fingerprint,
    parse_idempotency_key,
)
from services.api.auth.dependencies import authenticate, revoked
from services.api.auth.tokens import Principal
from services.api.errors import database_unavailable, error_response
from services.api.rate_limits import limit_submissions
from services.api.resources import Resources
from services.api.statuses import Status
from shared.events.catalog import ApplicationSubmitted, DocumentRef
from shared.events.envelope import Envelope, new_envelope

log = structlog.get_logger("api.applications")


@dataclass(frozen=True)
class Intake:
    """What the accept path keeps for the life of the process."""

    admission: AdmissionLimit
    group_commit: GroupCommit


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
        token_version=user.token_version,
        form=form,
        correlation_id=correlation_id,
        event=submitted_event(application_id, user, form, correlation_id),
        answer=views.submission_answer(public_url, application_id, Status.SUBMITTED),
        idempotency=IdempotencyClaim(key, fingerprint(form)) if key else None,
    )


# How a busy answer's detail starts: clients (the chaos load) tell it from an outage's 503.
BUSY = "too many submissions at once"


def busy(intake: Intake) -> JSONResponse:
    seconds = intake.admission.advice.seconds
    return error_response(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{BUSY}; nothing was stored: send the same request again"
        f" (with the same Idempotency-Key) in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


async def accept_submission(
    request: Request, deps: Resources, user: Principal, correlation_id: str
) -> Response:
    # Before the admission limit and the body: a flooding applicant costs one upsert, not
    # a slot and an upload. Raises the 429 (both doors turn HTTPException into the answer).
    await limit_submissions(deps, user)
    intake = deps.intake
    if not intake.admission.try_enter():
        return busy(intake)
    accepted = False
    try:
        response = await _accept(request, deps, user, correlation_id)
        accepted = response.status_code == status.HTTP_202_ACCEPTED
        return response
    finally:
        intake.admission.leave(accepted)


async def _accept(
    request: Request, deps: Resources, user: Principal, correlation_id: str
) -> Response:
    try:
        key = parse_idempotency_key(request.headers.get("idempotency-key"))
        form = await read_submission(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            blobs=deps.blobs,
            limits=deps.upload_limits,
            publisher=deps.blob_publisher,
            idle_timeout=deps.settings.api_upload_idle_timeout_seconds,
        )
    except SubmissionInvalid as refused:
        return error_response(refused.status, refused.detail)
    except ClientDisconnect:
        log.info("client went away during its upload; nothing was stored")
        return error_response(status.HTTP_400_BAD_REQUEST, "the request body was cut short")

    submission = new_submission(user, form, correlation_id, deps.settings.public_url, key)
    try:
        outcome = await deps.intake.group_commit.write(submission)
    except IdempotencyConflict:
        return error_response(
            status.HTTP_409_CONFLICT,
            f"Idempotency-Key {key!r} was already used for a different request;"
            " send a new key for a new application",
        )
    except TokenRevoked:  # a password reset since the token was issued, or no such account
        raise revoked() from None  # both doors turn it into the 401
    accepted_id = str(outcome.answer["applicationId"])
    headers = {"Location": views.location(accepted_id)}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    log.info("application accepted", application_id=accepted_id, replayed=outcome.replayed)
    return JSONResponse(outcome.answer, status_code=status.HTTP_202_ACCEPTED, headers=headers)


class SubmissionFastPath:
    """Takes ``POST /applications`` straight to ``accept_submission``; everything else goes on
    to the app. ``route`` is the documented FastAPI route: it says which path and method are
    taken, and metrics label requests by it."""

    def __init__(self, app: ASGIApp, route: APIRoute) -> None:
        self.app = app
        self.route = route
        self.path = route.path
        self.methods = route.methods or set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] not in self.methods
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        deps: Resources = request.app.state.resources
        try:
            user = authenticate(deps.tokens, request.headers.get("authorization"))
            response = await accept_submission(request, deps, user, request.state.request_id)
        except HTTPException as refused:
            response = error_response(refused.status_code, refused.detail, refused.headers)
        except psycopg.OperationalError as error:  # the app's handler, which is bypassed
            response = database_unavailable(request.url.path, error)
        await response(scope, receive, send)

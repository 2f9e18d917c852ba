"""``/payments/checkout/{id}`` (the pay link) and ``/webhooks/payments`` (the provider)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.api.applications.repository import find_checkout
from services.api.applications.views import CheckoutReady
from services.api.auth.dependencies import CurrentUser, viewer
from services.api.errors import ErrorBody, error_response, not_found, parse_application_id
from services.api.payments.repository import record_webhook
from services.api.resources import Resources, request_id, resources
from services.api.statuses import Status
from shared.events.catalog import PaymentWebhookReceived
from shared.events.envelope import new_envelope
from shared.outbox.writer import write_outbox
from shared.signing import SIGNATURE_HEADER, InvalidSignature, verify_signature

router = APIRouter(tags=["payments"])
Deps = Annotated[Resources, Depends(resources)]
MAX_WEBHOOK_BYTES = 64 * 1024

# A checkout that will never come: answer so, instead of "try again" forever.
_NOTHING_TO_PAY = {
    Status.VERIFICATION_FAILED: "the documents were rejected; there is nothing to pay",
    Status.PAYMENT_FAILED: "the payment failed",
    Status.COMPLETED: "the application is already paid and complete",
}


class ProviderNotification(BaseModel):
    """The provider's webhook body (see the system conventions)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=200)
    payment_id: str = Field(min_length=1, max_length=200)
    application_id: str
    status: Literal["paid", "failed"]
    failure_reason: str | None = Field(default=None, max_length=2000)


@router.get(
    "/payments/checkout/{application_id}",
    response_model=CheckoutReady,
    responses={
        202: {"description": "the checkout is being prepared; retry after Retry-After seconds"},
        401: {"model": ErrorBody, "description": "missing, invalid or expired token"},
        404: {"description": "no such application, or not yours"},
        409: {"description": "there is nothing to pay (rejected, failed or already paid)"},
    },
)
async def checkout(application_id: str, user: CurrentUser, deps: Deps) -> JSONResponse:
    async with deps.connection() as conn:
        found = await find_checkout(conn, parse_application_id(application_id), viewer(user))
    if found is None:
        raise not_found()
    current, checkout_url = found
    if checkout_url:
        return JSONResponse(CheckoutReady(checkout_url=checkout_url).model_dump(by_alias=True))
    if current in _NOTHING_TO_PAY:
        return error_response(status.HTTP_409_CONFLICT, _NOTHING_TO_PAY[Status(current)])
    return JSONResponse(
        {"detail": "the checkout is being prepared", "status": current},
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Retry-After": "1"},
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"larger than {limit} bytes")
    return bytes(body)


@router.post(
    "/webhooks/payments",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "an event id received before: acknowledged, nothing done"},
        401: {"description": "bad or missing signature, or a stale timestamp"},
        404: {"description": "the application is unknown"},
        413: {"model": ErrorBody, "description": "the body is too large"},
    },
)
async def payment_webhook(
    request: Request, deps: Deps, correlation_id: Annotated[str, Depends(request_id)]
) -> JSONResponse:
    """Checked (HMAC + timestamp, event id once), then handed on as an outbox event: the
    payments service decides what it means."""
    body = await _read_limited(request, MAX_WEBHOOK_BYTES)
    try:
        verify_signature(
            deps.settings.webhook_secret.get_secret_value(),
            request.headers.get(SIGNATURE_HEADER),
            body,
            time.time(),
            deps.settings.webhook_tolerance_seconds,
        )
    except InvalidSignature as error:
        return error_response(status.HTTP_401_UNAUTHORIZED, str(error))
    try:
        notification = ProviderNotification.model_validate_json(body)
        application_id = str(uuid.UUID(notification.application_id))
    except (ValidationError, ValueError) as error:
        return error_response(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid webhook body: {error}"
        )

    async with deps.connection() as conn, conn.transaction():
        recorded = await record_webhook(
            conn,
            event_id=notification.event_id,
            application_id=application_id,
            payment_id=notification.payment_id,
            status=notification.status,
        )
        if recorded is None:
            return error_response(status.HTTP_404_NOT_FOUND, "application not found")
        if not recorded.first_time:
            # Signed by the provider, so it is the provider retrying (our answer was lost):
            # acknowledge it, or it retries for ever; it was handed on the first time.
            return JSONResponse({"detail": "already received"}, status_code=status.HTTP_200_OK)
        event = PaymentWebhookReceived(
            provider_event_id=notification.event_id,
            payment_id=notification.payment_id,
            application_id=application_id,
            applicant_email=recorded.applicant_email,
            status=notification.status,
            failure_reason=notification.failure_reason,
        )
        # The application's own correlation id: its whole story shares one id.
        envelope = new_envelope(
            event, correlation_id=recorded.correlation_id, causation_id=correlation_id
        )
        await write_outbox(conn, deps.outbox_schema, [envelope])
    return JSONResponse({"detail": "accepted"}, status_code=status.HTTP_202_ACCEPTED)

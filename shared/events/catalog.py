"""The event catalog: every event type the system publishes, with its payload schema.

A type's ``version`` is raised when its payload changes incompatibly; consumers refuse a
version they do not know (a permanent error: the message goes to the DLQ with the reason).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from shared.errors import InvalidPayload, UnknownEventType
from shared.events.sealed import SEALED_PATTERN


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    # The one service whose outbox emits this type: the broker lets only it (through the
    # relay) publish the type, and consumers accept the type only when signed with its key.
    published_by: ClassVar[str]


class DocumentRef(BaseModel):
    """A claim check: the bytes stay in the blob store, the message carries the hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: str
    filename: str
    content_type: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DocumentVerdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    document_id: str
    filename: str
    ok: bool
    reason: str | None = None


class ApplicationSubmitted(EventPayload):
    """Events carry what their consumers need (the applicant's address included), so no
    consumer has to wait for another event or ask another service."""

    event_type = "application.submitted"
    published_by = "api"

    application_id: str
    applicant_id: str
    applicant_email: EmailStr
    program: str
    documents: list[DocumentRef]


class DocumentsVerified(EventPayload):
    event_type = "documents.verified"
    published_by = "verifier"

    application_id: str
    applicant_email: EmailStr
    documents: list[DocumentVerdict]


class DocumentsRejected(EventPayload):
    event_type = "documents.rejected"
    published_by = "verifier"

    application_id: str
    applicant_email: EmailStr
    documents: list[DocumentVerdict]


class PaymentInitiated(EventPayload):
    event_type = "payment.initiated"
    published_by = "payments"

    application_id: str
    applicant_email: EmailStr
    payment_id: str
    checkout_url: str
    amount_cents: int = Field(gt=0)
    currency: str


class PaymentWebhookReceived(EventPayload):
    """The provider's signed notification, as the API accepted it."""

    event_type = "payment.webhook_received"
    published_by = "api"

    provider_event_id: str
    payment_id: str
    application_id: str
    applicant_email: EmailStr
    status: Literal["paid", "failed"]
    failure_reason: str | None = None


class PaymentCompleted(EventPayload):
    event_type = "payment.completed"
    published_by = "payments"

    application_id: str
    applicant_email: EmailStr
    payment_id: str
    amount_cents: int = Field(gt=0)
    currency: str


class PaymentFailed(EventPayload):
    event_type = "payment.failed"
    published_by = "payments"

    application_id: str
    applicant_email: EmailStr
    reason: str


class ApplicationCompleted(EventPayload):
    event_type = "application.completed"
    published_by = "api"

    application_id: str
    applicant_email: EmailStr


class PasswordResetRequested(EventPayload):
    """The token is sealed for the mailer (``shared.events.sealed``): events are kept where
    many can read them."""

    event_type = "auth.password_reset_requested"
    version = 2
    published_by = "api"

    email: EmailStr
    sealed_token: str = Field(pattern=SEALED_PATTERN, max_length=512)


class OtpRequested(EventPayload):
    """The code is sealed for the mailer, as the reset token is."""

    event_type = "auth.otp_requested"
    version = 2
    published_by = "api"

    email: EmailStr
    sealed_code: str = Field(pattern=SEALED_PATTERN, max_length=512)


class AnnouncementPublished(EventPayload):
    """A bulk mail to many recipients: the batch lane."""

    event_type = "announcement.published"
    published_by = "api"

    recipient: EmailStr
    subject: str
    body: str


class ReportRequested(EventPayload):
    """A report mailed to an operator: the low lane."""

    event_type = "report.requested"
    published_by = "api"

    recipient: EmailStr
    report: str


class EmailSent(EventPayload):
    event_type = "email.sent"
    published_by = "mailer"

    template: str
    recipient: EmailStr
    message_id_header: str
    lane: str
    application_id: str | None = None


CATALOG: dict[str, type[EventPayload]] = {
    model.event_type: model
    for model in (
        ApplicationSubmitted,
        DocumentsVerified,
        DocumentsRejected,
        PaymentInitiated,
        PaymentWebhookReceived,
        PaymentCompleted,
        PaymentFailed,
        ApplicationCompleted,
        PasswordResetRequested,
        OtpRequested,
        AnnouncementPublished,
        ReportRequested,
        EmailSent,
    )
}


def publisher_of(event_type: str) -> str:
    """The service that owns ``event_type`` (``UnknownEventType`` for a type not listed)."""
    return payload_model(event_type).published_by


def types_published_by(service: str) -> tuple[str, ...]:
    return tuple(sorted(t for t, model in CATALOG.items() if model.published_by == service))


def payload_model(event_type: str) -> type[EventPayload]:
    try:
        return CATALOG[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def parse_payload(event_type: str, version: int, payload: dict[str, Any]) -> EventPayload:
    model = payload_model(event_type)
    if version != model.version:
        raise InvalidPayload(
            f"{event_type} version {version} is not supported (expected {model.version})"
        )
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise InvalidPayload(f"{event_type}: {where}: {first['msg']}") from error

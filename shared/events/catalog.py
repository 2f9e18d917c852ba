"""The event catalog: every event type the system publishes, with its payload schema.

A type's ``version`` is raised when its payload changes incompatibly; consumers refuse a
version they do not know (a permanent error: the message goes to the DLQ with the reason).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.networks import validate_email

from shared.errors import InvalidPayload, UnknownEventType
from shared.events.sealed import SEALED_PATTERN

# Whoever builds an event checks its addresses in full (email-validator, as pydantic's
# EmailStr). A consumer parsing a published event checks only the shape that matters to it
# (one @, no spaces or line breaks: nothing to inject into a mail header): the full check once
# per address at the edge, not again by every consumer of every hop, where it cost more CPU
# than the rest of the message's decoding.
ADDRESSES_CHECKED = "addresses_checked_at_the_edge"
_ADDRESS_SHAPE = re.compile(r"[^@\s]+@[^@\s]+")


def _address(value: str, info: ValidationInfo) -> str:
    if info.context and info.context.get(ADDRESSES_CHECKED):
        if not _ADDRESS_SHAPE.fullmatch(value):
            raise ValueError("value is not an e-mail address")
        return value
    return validate_email(value)[1]


EmailAddress = Annotated[
    str, AfterValidator(_address), WithJsonSchema({"type": "string", "format": "email"})
]


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
    applicant_email: EmailAddress
    program: str
    documents: list[DocumentRef]


class DocumentsVerified(EventPayload):
    event_type = "documents.verified"
    published_by = "verifier"

    application_id: str
    applicant_email: EmailAddress
    documents: list[DocumentVerdict]


class DocumentsRejected(EventPayload):
    event_type = "documents.rejected"
    published_by = "verifier"

    application_id: str
    applicant_email: EmailAddress
    documents: list[DocumentVerdict]


class PaymentInitiated(EventPayload):
    event_type = "payment.initiated"
    published_by = "payments"

    application_id: str
    applicant_email: EmailAddress
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
    applicant_email: EmailAddress
    status: Literal["paid", "failed"]
    failure_reason: str | None = None


class PaymentCompleted(EventPayload):
    event_type = "payment.completed"
    published_by = "payments"

    application_id: str
    applicant_email: EmailAddress
    payment_id: str
    amount_cents: int = Field(gt=0)
    currency: str


class PaymentFailed(EventPayload):
    event_type = "payment.failed"
    published_by = "payments"

    application_id: str
    applicant_email: EmailAddress
    reason: str


class PasswordResetRequested(EventPayload):
    """The token is sealed for the mailer (``shared.events.sealed``): events are kept where
    many can read them."""

    event_type = "auth.password_reset_requested"
    version = 2
    published_by = "api"

    email: EmailAddress
    sealed_token: str = Field(pattern=SEALED_PATTERN, max_length=512)


class OtpRequested(EventPayload):
    """The code is sealed for the mailer, as the reset token is."""

    event_type = "auth.otp_requested"
    version = 2
    published_by = "api"

    email: EmailAddress
    sealed_code: str = Field(pattern=SEALED_PATTERN, max_length=512)


REPORT_KINDS = ("applications", "payments", "dead_letters")
ReportKind = Literal["applications", "payments", "dead_letters"]
ReportFormat = Literal["csv", "xlsx"]


class ReportFilters(BaseModel):
    """What a report covers. Each kind reads the filters that apply to it (``program`` and
    ``status`` the applications, ``status`` the payments too); dates bound when the row was
    created, ``created_from`` included, ``created_to`` excluded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    program: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=40)
    created_from: datetime | None = None
    created_to: datetime | None = None


class ReportRequested(EventPayload):
    """An administrator asked for a report: the low lane builds the file, stores it and mails
    ``recipient`` a link to it."""

    event_type = "report.requested"
    version = 2
    published_by = "api"

    report_id: str
    kind: ReportKind
    format: ReportFormat = "csv"
    filters: ReportFilters = ReportFilters()
    recipient: EmailAddress


class Audience(BaseModel):
    """Who an announcement goes to: every applicant, those who applied to ``value`` (a
    program), or those whose application is in ``value`` (a status)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["all", "program", "status"] = "all"
    value: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _value_when_needed(self) -> Audience:
        if (self.kind == "all") != (self.value is None):
            raise ValueError("audience 'all' takes no value; 'program' and 'status' need one")
        return self


class AnnouncementPublished(EventPayload):
    """An administrator published an announcement: the batch lane expands its audience into
    one ``announcement.delivery`` per recipient."""

    event_type = "announcement.published"
    version = 2
    published_by = "api"

    announcement_id: str
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=50_000)
    audience: Audience = Audience()


class AnnouncementDelivery(EventPayload):
    """One recipient of an announcement: the mailer's own work item on the batch lane, sent at
    the lane's rate. Its message id is derived from (announcement, recipient), so expanding an
    announcement twice yields the same messages, and the consumer's claim drops the copies."""

    event_type = "announcement.delivery"
    published_by = "mailer"

    announcement_id: str
    recipient: EmailAddress
    subject: str
    body: str


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
        PasswordResetRequested,
        OtpRequested,
        ReportRequested,
        AnnouncementPublished,
        AnnouncementDelivery,
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


def parse_payload(
    event_type: str, version: int, payload: dict[str, Any], *, published: bool = False
) -> EventPayload:
    """The typed payload, or ``InvalidPayload``. ``published``: the event came from the broker,
    built by a service that checked its addresses in full (see ``EmailAddress``)."""
    model = payload_model(event_type)
    if version != model.version:
        raise InvalidPayload(
            f"{event_type} version {version} is not supported (expected {model.version})"
        )
    try:
        return model.model_validate(payload, context={ADDRESSES_CHECKED: published})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise InvalidPayload(f"{event_type}: {where}: {first['msg']}") from error

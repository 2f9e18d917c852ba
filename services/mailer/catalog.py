"""Which emails an event calls for: a pure function from an event (and the key that opens the
secrets sealed in it) to ``EmailSpec``s.

Events are fat (they carry the applicant's address), so nothing here asks another service.
``payment.completed`` sends two: the receipt, and the mail saying the application is complete
(a payment is only started once the documents are verified, so a completed payment means a
complete application: no separate event is needed to say so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from shared.errors import InvalidPayload
from shared.events.catalog import (
    AnnouncementDelivery,
    ApplicationSubmitted,
    DocumentsRejected,
    EventPayload,
    OtpRequested,
    PasswordResetRequested,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    ReportRequested,
)
from shared.events.sealed import SealBroken, SecretSealer, seal_context


@dataclass(frozen=True)
class EmailSpec:
    """What to send: the template, to whom, its subject and the data the template shows."""

    template: str
    recipient: str
    subject: str
    context: dict[str, Any] = field(default_factory=dict)
    application_id: str | None = None
    # Extra headers (an announcement's List-Unsubscribe)
    headers: dict[str, str] = field(default_factory=dict)


def format_amount(amount_cents: int, currency: str) -> str:
    return f"{amount_cents // 100}.{amount_cents % 100:02d} {currency}"


def password_reset_url(api_public_url: str, token: str) -> str:
    return f"{api_public_url.rstrip('/')}/auth/password-reset/confirm?{urlencode({'token': token})}"


def opened(payload: PasswordResetRequested | OtpRequested, sealer: SecretSealer) -> str:
    """The secret the API sealed for us; a seal that does not open can never be sent
    (``InvalidPayload``: dead-lettered with the reason)."""
    sealed = (
        payload.sealed_token if isinstance(payload, PasswordResetRequested) else payload.sealed_code
    )
    try:
        return sealer.unseal(sealed, seal_context(payload.event_type, payload.email))
    except SealBroken as error:
        raise InvalidPayload(f"{payload.event_type}: {error}") from None


def emails_for(
    payload: EventPayload, *, api_public_url: str, sealer: SecretSealer
) -> tuple[EmailSpec, ...]:
    """The emails ``payload`` calls for, in sending order; none when the event sends no mail."""
    if isinstance(payload, PaymentCompleted):
        return (_receipt(payload), _application_complete(payload))
    single = _email_for(payload, api_public_url=api_public_url, sealer=sealer)
    return () if single is None else (single,)


def _receipt(payload: PaymentCompleted) -> EmailSpec:
    return EmailSpec(
        "receipt",
        payload.applicant_email,
        "Your payment receipt",
        {
            "application_id": payload.application_id,
            "payment_id": payload.payment_id,
            "amount": format_amount(payload.amount_cents, payload.currency),
        },
        payload.application_id,
    )


def _application_complete(payload: PaymentCompleted) -> EmailSpec:
    return EmailSpec(
        "application_complete",
        payload.applicant_email,
        "Your application is complete",
        {"application_id": payload.application_id},
        payload.application_id,
    )


def _email_for(
    payload: EventPayload, *, api_public_url: str, sealer: SecretSealer
) -> EmailSpec | None:
    match payload:
        case ApplicationSubmitted():
            return EmailSpec(
                "confirmation",
                payload.applicant_email,
                "We received your application",
                {
                    "application_id": payload.application_id,
                    "program": payload.program,
                    "documents": [document.filename for document in payload.documents],
                },
                payload.application_id,
            )
        case DocumentsRejected():
            return EmailSpec(
                "documents_rejected",
                payload.applicant_email,
                "Some of your documents were not accepted",
                {
                    "application_id": payload.application_id,
                    "rejected": [
                        {"filename": d.filename, "reason": d.reason or "not accepted"}
                        for d in payload.documents
                        if not d.ok
                    ],
                    "accepted": [d.filename for d in payload.documents if d.ok],
                },
                payload.application_id,
            )
        case PaymentInitiated():
            return EmailSpec(
                "pay_link",
                payload.applicant_email,
                "Pay your application fee",
                {
                    "application_id": payload.application_id,
                    "checkout_url": payload.checkout_url,
                    "amount": format_amount(payload.amount_cents, payload.currency),
                },
                payload.application_id,
            )
        case PaymentFailed():
            return EmailSpec(
                "payment_failed",
                payload.applicant_email,
                "Your payment did not go through",
                {"application_id": payload.application_id, "reason": payload.reason},
                payload.application_id,
            )
        case PasswordResetRequested():
            return EmailSpec(
                "password_reset",
                payload.email,
                "Reset your password",
                {"reset_url": password_reset_url(api_public_url, opened(payload, sealer))},
            )
        case OtpRequested():
            code = opened(payload, sealer)
            return EmailSpec("otp", payload.email, "Your one-time code", {"code": code})
    return None


def report_email(
    payload: ReportRequested, *, rows: int, filename: str, url: str, expires_at: datetime
) -> EmailSpec:
    """The link to a built report (the file itself stays in the blob store: a report can be
    larger than any mailbox takes)."""
    return EmailSpec(
        "report",
        payload.recipient,
        f"Your report is ready: {payload.kind}",
        {
            "kind": payload.kind,
            "rows": rows,
            "filename": filename,
            "url": url,
            "expires_at": expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


def announcement_email(payload: AnnouncementDelivery, unsubscribe_url: str) -> EmailSpec:
    """One recipient's copy; the unsubscribe link also as the List-Unsubscribe header
    (RFC 8058: mail clients offer it as a button and POST to it)."""
    return EmailSpec(
        "announcement",
        payload.recipient,
        payload.subject,
        {"body": payload.body, "unsubscribe_url": unsubscribe_url},
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )

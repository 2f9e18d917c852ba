"""One realistic payload per event the mailer sends mail for, shared by the mailer's tests."""

from __future__ import annotations

from shared.events.catalog import (
    AnnouncementDelivery,
    ApplicationSubmitted,
    DocumentRef,
    DocumentsRejected,
    DocumentVerdict,
    EventPayload,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    ReportRequested,
)
from tests.support.events import otp_requested, reset_requested

SHA = "ab" * 32


def submitted(email: str = "ada@example.org", program: str = "Computer Science") -> EventPayload:
    return ApplicationSubmitted(
        application_id="app-1",
        applicant_id="user-1",
        applicant_email=email,
        program=program,
        documents=[
            DocumentRef(
                document_id="d1",
                filename="transcript.pdf",
                content_type="application/pdf",
                size=10,
                sha256=SHA,
            ),
            DocumentRef(
                document_id="d2",
                filename="photo.png",
                content_type="image/png",
                size=10,
                sha256=SHA,
            ),
        ],
    )


def rejected() -> EventPayload:
    return DocumentsRejected(
        application_id="app-2",
        applicant_email="bob@example.org",
        documents=[
            DocumentVerdict(document_id="d1", filename="cv.pdf", ok=True),
            DocumentVerdict(
                document_id="d2", filename="scan.pdf", ok=False, reason="PDF is encrypted"
            ),
            DocumentVerdict(
                document_id="d3",
                filename="id.png",
                ok=False,
                reason="declared image/png but the bytes are a JPEG",
            ),
        ],
    )


def one_of_each() -> list[EventPayload]:
    return [
        submitted(),
        rejected(),
        PaymentInitiated(
            application_id="app-3",
            applicant_email="cy@example.org",
            payment_id="pay-3",
            checkout_url="http://127.0.0.1:8100/checkout/pay-3",
            amount_cents=5000,
            currency="EUR",
        ),
        PaymentCompleted(
            application_id="app-4",
            applicant_email="di@example.org",
            payment_id="pay-4",
            amount_cents=5005,
            currency="EUR",
        ),
        PaymentFailed(application_id="app-5", applicant_email="ed@example.org", reason="declined"),
        reset_requested("gu@example.org", "tok/en+1=="),
        otp_requested("ha@example.org", "042917"),
    ]


def report_requested() -> ReportRequested:
    return ReportRequested(
        report_id="7d4f0a52-9a0e-4c39-8d1e-0a7c1f3e2b10",
        kind="applications",
        recipient="ops@example.org",
    )


def announcement_delivery() -> AnnouncementDelivery:
    return AnnouncementDelivery(
        announcement_id="0b5d1c7e-3f0a-4d8e-9c2b-5e6f7a8b9c0d",
        recipient="io@example.org",
        subject="Open day",
        body="Come on Friday.\n\nBring a pen.",
    )


# The lanes whose events do not map to mails one to one: reports (low), announcements (batch).
BULK_EVENT_TYPES = frozenset(
    {"report.requested", "announcement.published", "announcement.delivery"}
)

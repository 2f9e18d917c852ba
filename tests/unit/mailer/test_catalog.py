"""Which email each event sends, to whom, with what data."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from services.mailer.catalog import emails_for, format_amount
from shared.events.catalog import (
    DocumentsVerified,
    DocumentVerdict,
    EventPayload,
)
from shared.system_topology import MAILER_LANES
from tests.support.events import DEVELOPMENT_SEALER, reset_requested
from tests.unit.mailer.samples import BULK_EVENT_TYPES, one_of_each, rejected

API = "http://portal.example:8000"

EXPECTED = {
    "application.submitted": [("confirmation", "ada@example.org", "app-1")],
    "documents.rejected": [("documents_rejected", "bob@example.org", "app-2")],
    "payment.initiated": [("pay_link", "cy@example.org", "app-3")],
    # A completed payment completes the application: the receipt, then the completion mail.
    "payment.completed": [
        ("receipt", "di@example.org", "app-4"),
        ("application_complete", "di@example.org", "app-4"),
    ],
    "payment.failed": [("payment_failed", "ed@example.org", "app-5")],
    "auth.password_reset_requested": [("password_reset", "gu@example.org", None)],
    "auth.otp_requested": [("otp", "ha@example.org", None)],
}


@pytest.mark.parametrize("payload", one_of_each(), ids=lambda p: p.event_type)
def test_each_mail_event_picks_its_template_and_recipient(payload: EventPayload) -> None:
    # Given an event the mailer consumes
    # When it is mapped to its emails
    specs = emails_for(payload, api_public_url=API, sealer=DEVELOPMENT_SEALER)
    # Then the templates, recipients and application ids are the expected ones
    assert [(s.template, s.recipient, s.application_id) for s in specs] == EXPECTED[
        payload.event_type
    ]
    assert all(spec.subject for spec in specs)


def test_every_event_routed_to_a_mailer_lane_has_an_email() -> None:
    # Given the event types bound to the mailer lanes
    routed = {event for spec in MAILER_LANES.values() for event in spec.bindings}
    # Then each of them is covered by the samples (and so by the test above), but for the
    # reports and announcements, which have handlers of their own
    assert routed == {payload.event_type for payload in one_of_each()} | BULK_EVENT_TYPES


@pytest.mark.parametrize(
    "payload",
    [
        DocumentsVerified(
            application_id="a",
            applicant_email="x@example.org",
            documents=[DocumentVerdict(document_id="d", filename="f.pdf", ok=True)],
        ),
    ],
    ids=lambda p: p.event_type,
)
def test_events_without_a_mail_give_none(payload: EventPayload) -> None:
    assert emails_for(payload, api_public_url=API, sealer=DEVELOPMENT_SEALER) == ()


def test_rejected_documents_list_each_rejected_file_with_its_reason() -> None:
    # Given a rejection of two files out of three
    [spec] = emails_for(rejected(), api_public_url=API, sealer=DEVELOPMENT_SEALER)
    # Then the context names both rejected files with their reasons, and the accepted one apart
    assert spec.context["rejected"] == [
        {"filename": "scan.pdf", "reason": "PDF is encrypted"},
        {"filename": "id.png", "reason": "declared image/png but the bytes are a JPEG"},
    ]
    assert spec.context["accepted"] == ["cv.pdf"]


def test_password_reset_link_points_at_the_api_and_carries_the_token_encoded() -> None:
    # Given a token with characters that are special in a URL
    payload = reset_requested("u@example.org", "a/b+c==&d")
    # When mapped
    [spec] = emails_for(payload, api_public_url=API + "/", sealer=DEVELOPMENT_SEALER)
    # Then the link is the API's confirm endpoint, and decoding it gives the token back
    url = urlsplit(spec.context["reset_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == API + "/auth/password-reset/confirm"
    assert parse_qs(url.query) == {"token": ["a/b+c==&d"]}


@pytest.mark.parametrize(
    ("cents", "currency", "shown"),
    [(5000, "EUR", "50.00 EUR"), (5, "EUR", "0.05 EUR"), (123456, "USD", "1234.56 USD")],
)
def test_amounts_are_shown_in_units_with_two_decimals(
    cents: int, currency: str, shown: str
) -> None:
    assert format_amount(cents, currency) == shown

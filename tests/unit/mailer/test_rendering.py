"""Templates render both alternatives with the event's data and stable headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import jinja2
import pytest

from services.mailer.catalog import EmailSpec, announcement_email, emails_for, report_email
from services.mailer.rendering import message_id_header, render_email, template_environment
from shared.events.catalog import EventPayload
from tests.support.events import DEVELOPMENT_SEALER
from tests.unit.mailer.samples import (
    announcement_delivery,
    one_of_each,
    rejected,
    report_requested,
    submitted,
)

API = "http://127.0.0.1:8000"
SENDER = "Admissions <no-reply@admissions.local>"


@pytest.fixture(scope="module")
def templates() -> jinja2.Environment:
    return template_environment()


def spec_of(payload: EventPayload) -> EmailSpec:
    """The event's first mail."""
    return emails_for(payload, api_public_url=API, sealer=DEVELOPMENT_SEALER)[0]


REPORT_EXPIRES = datetime(2026, 12, 10, 9, 30, tzinfo=UTC)
UNSUBSCRIBE = f"{API}/announcements/unsubscribe?email=io%40example.org&token=abc"


def report_mail() -> EmailSpec:
    return report_email(
        report_requested(),
        rows=12,
        filename="applications-7d4f0a52.csv",
        url=f"{API}/admin/reports/7d4f0a52/download",
        expires_at=REPORT_EXPIRES,
    )


def announcement_mail() -> EmailSpec:
    return announcement_email(announcement_delivery(), UNSUBSCRIBE)


def every_mail() -> list[EmailSpec]:
    return [
        spec
        for payload in one_of_each()
        for spec in emails_for(payload, api_public_url=API, sealer=DEVELOPMENT_SEALER)
    ] + [report_mail(), announcement_mail()]


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("spec", every_mail(), ids=lambda spec: spec.template)
def test_every_template_renders_text_and_html_with_headers(
    templates: jinja2.Environment, spec: EmailSpec
) -> None:
    # Given a mail an event calls for
    event_id = str(uuid.uuid4())
    # When rendered
    mail = render_email(templates, spec, event_message_id=event_id, lane="medium", sender=SENDER)
    message = mail.parsed()
    # Then it is a multipart/alternative with a text and an HTML part, and the headers name it
    assert message.get_content_type() == "multipart/alternative"
    text, html = bodies(message)
    assert text.strip() and "<html" in html
    assert message["To"] == spec.recipient
    assert message["Subject"] == spec.subject
    assert message["Message-ID"] == f"<{event_id}.{spec.template}@admissions.local>"
    assert message["X-Email-Template"] == spec.template
    assert message["X-Lane"] == "medium"
    assert message["X-Application-Id"] == spec.application_id
    # and the SMTP envelope is the mail's own
    assert (mail.envelope_from, mail.recipients) == ("no-reply@admissions.local", (spec.recipient,))
    assert (mail.message_id, mail.template, mail.lane) == (
        message["Message-ID"],
        spec.template,
        "medium",
    )


@pytest.mark.parametrize(
    ("payload", "must_show"),
    [
        (submitted(), ["app-1", "Computer Science", "transcript.pdf", "photo.png"]),
        (rejected(), ["scan.pdf", "PDF is encrypted", "id.png", "bytes are a JPEG"]),
        (one_of_each()[2], ["http://127.0.0.1:8100/checkout/pay-3", "50.00 EUR"]),
        (one_of_each()[3], ["pay-4", "50.05 EUR"]),
        (one_of_each()[4], ["declined"]),
        (one_of_each()[5], [f"{API}/auth/password-reset/confirm?token=tok%2Fen%2B1%3D%3D"]),
        (one_of_each()[6], ["042917"]),
        (
            announcement_mail(),
            ["Come on Friday.", "Bring a pen.", "unsubscribe?email=io%40example.org"],
        ),
        (report_mail(), ["12 rows", f"{API}/admin/reports/7d4f0a52/download", "2026-12-10 09:30"]),
    ],
    ids=lambda value: getattr(value, "event_type", getattr(value, "template", "")),
)
def test_both_alternatives_show_the_event_data(
    templates: jinja2.Environment, payload: EventPayload | EmailSpec, must_show: list[str]
) -> None:
    spec = payload if isinstance(payload, EmailSpec) else spec_of(payload)
    mail = render_email(templates, spec, event_message_id="e", lane="high", sender=SENDER)
    text, html = bodies(mail.parsed())
    for fragment in must_show:
        assert fragment in text
        assert fragment in html


def test_html_escapes_payload_text_and_plain_text_keeps_it(
    templates: jinja2.Environment,
) -> None:
    # Given a program name with markup in it
    spec = spec_of(submitted(program='<script>alert("x")</script> & Law'))
    # When rendered
    mail = render_email(templates, spec, event_message_id="e", lane="medium", sender=SENDER)
    text, html = bodies(mail.parsed())
    # Then the HTML shows it escaped and the text as written
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "&amp; Law" in html
    assert '<script>alert("x")</script> & Law' in text


def test_message_id_is_the_same_when_the_same_event_is_rendered_again(
    templates: jinja2.Environment,
) -> None:
    # Given one event rendered twice, at different times (a redelivery after a crash)
    spec = spec_of(submitted())
    first = render_email(
        templates,
        spec,
        event_message_id="0b9d",
        lane="medium",
        sender=SENDER,
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    again = render_email(
        templates,
        spec,
        event_message_id="0b9d",
        lane="medium",
        sender=SENDER,
        now=datetime(2024, 1, 2, tzinfo=UTC),
    )
    # Then the Message-ID is the same, and another event gets another one
    assert first.parsed()["Date"] != again.parsed()["Date"]
    assert first.parsed()["Message-ID"] == again.parsed()["Message-ID"]
    assert first.message_id == again.message_id == message_id_header("0b9d", "confirmation")
    other = render_email(templates, spec, event_message_id="77aa", lane="medium", sender=SENDER)
    assert other.message_id != first.message_id


def test_a_long_message_id_reads_back_unchanged_from_the_wire(
    templates: jinja2.Environment,
) -> None:
    # Given the longest template name and a full UUID (the header exceeds 78 characters)
    spec = spec_of(rejected())
    event_id = str(uuid.uuid4())
    mail = render_email(templates, spec, event_message_id=event_id, lane="medium", sender=SENDER)
    # When it is parsed again as sent
    wire = mail.data
    parsed = mail.parsed()
    # Then the Message-ID is exactly the one rendered (no folding, no leading space), CRLF lines
    assert parsed["Message-ID"] == message_id_header(event_id, "documents_rejected")
    assert b"\r\nMessage-ID: <" in wire


def test_non_ascii_subjects_and_bodies_and_long_lines_read_back_as_written(
    templates: jinja2.Environment,
) -> None:
    # Given a program with a Vietnamese name, and one whose name makes an over-long line
    for program in ("Khoa học Máy tính", "Kỹ thuật " + "x" * 1200):
        spec = spec_of(submitted(program=program))
        # When rendered and read back as a client reads it
        mail = render_email(templates, spec, event_message_id="e", lane="high", sender=SENDER)
        text, html = bodies(mail.parsed())
        # Then the name shows in both alternatives, and no line on the wire breaks SMTP's limit
        assert program in text and program in html
        assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998

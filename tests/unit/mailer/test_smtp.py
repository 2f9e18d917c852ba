"""SMTP errors, translated at the boundary into retry or dead-letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import aiosmtplib
import pytest

from services.mailer.handler import lane_wait_seconds
from services.mailer.mail import OutgoingMail
from services.mailer.smtp import (
    FaultySender,
    MemorySender,
    RecipientRefused,
    SmtpUnavailable,
    classify_refusal,
)
from shared.errors import PermanentError
from shared.faults import FaultPoint, InjectedFault


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(code, "no", f"r{i}@example.org")
            for i, code in enumerate(codes)
        ]
    )


def test_a_permanent_refusal_is_a_domain_rule_violation() -> None:
    error = classify_refusal(refused(550))
    assert isinstance(error, RecipientRefused) and isinstance(error, PermanentError)
    assert "r0@example.org" in str(error) and "550" in str(error)


@pytest.mark.parametrize("codes", [(450,), (550, 451)])
def test_a_temporary_refusal_is_retried(codes: tuple[int, ...]) -> None:
    error = classify_refusal(refused(*codes))
    assert isinstance(error, SmtpUnavailable) and not isinstance(error, PermanentError)


def test_lane_wait_is_measured_from_the_event_time() -> None:
    now = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert lane_wait_seconds(datetime(2024, 5, 1, 14, 0, 7, tzinfo=plus_two), now) == 3.0
    assert lane_wait_seconds(datetime(2024, 5, 1, 12, 0, 8), now) == 2.0  # naive = UTC
    assert lane_wait_seconds(now + timedelta(seconds=1), now) == 0.0  # clock skew


async def test_a_faulty_sender_fails_some_sends_before_or_after_the_real_one() -> None:
    # Given a sender behind a fault point that fails half the sends (chaos runs' assembly)
    inner = MemorySender()
    sender = FaultySender(inner, FaultPoint("smtp", 0.5, 0.0, random.Random(3)))
    mail = OutgoingMail("a@x.org", ("b@x.org",), "<1@x>", "t", "high", b"Subject: t\r\n\r\nt")
    # When it sends 200 mails
    failed = 0
    for _ in range(200):
        try:
            await sender.send(mail)
        except InjectedFault:
            failed += 1
    # Then some failed, and the real sender got every other mail and some of the failed ones
    # (their answer was lost after the send)
    assert 0 < failed < 200
    assert 200 - failed < len(inner.sent) < 200

"""The mailer's handler through a fake unit of work, the in-memory sender and rate limiter:
no Postgres, no SMTP server."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.mailer.handler import Mailer
from services.mailer.rate_limit import LaneRate, MemoryRateLimiter
from services.mailer.rendering import template_environment
from services.mailer.sent_emails import SentEmail
from services.mailer.smtp import MemorySender
from shared.consumer.memory import InMemoryTransactions, MemoryTransaction
from shared.consumer.runtime import MessageContext
from shared.events.catalog import EventPayload, PaymentCompleted
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import MAILER_LANES
from tests.support.events import DEVELOPMENT_SEALER
from tests.unit.mailer.samples import one_of_each


@dataclass
class FakeSentEmails:
    recorded: list[SentEmail] = field(default_factory=list)

    async def record(self, email: SentEmail) -> bool:
        if any(e.message_id_header == email.message_id_header for e in self.recorded):
            return False
        self.recorded.append(email)
        return True


class FakeMailerWork(MemoryTransaction):
    def __init__(self, sent_emails: FakeSentEmails) -> None:
        super().__init__(InMemoryTransactions())
        self.sent_emails = sent_emails


def mailer(sender: MemorySender) -> Mailer:
    rates = {lane: LaneRate(refill_per_second=1000.0, capacity=1000.0) for lane in MAILER_LANES}
    return Mailer(
        templates=template_environment(),
        sender=sender,
        rate_limiter=MemoryRateLimiter(rates),
        mail_from="no-reply@admissions.local",
        api_public_url="http://api.test",
        sealer=DEVELOPMENT_SEALER,
    )


def context(
    record: FakeSentEmails, payload: EventPayload, envelope: Envelope
) -> MessageContext[FakeMailerWork]:
    return MessageContext(envelope, payload, 1, MAILER_LANES["high"], FakeMailerWork(record))


async def test_a_completed_payment_sends_two_mails_once_each_and_announces_none() -> None:
    # Given a completed payment
    payload = one_of_each()[3]
    assert isinstance(payload, PaymentCompleted)
    envelope = new_envelope(payload)
    sender, record = MemorySender(), FakeSentEmails()
    # When it is handled, then handled again (a redelivery whose claim was trimmed)
    first = context(record, payload, envelope)
    await mailer(sender).handle(first)
    await mailer(sender).handle(context(record, payload, envelope))
    # Then the receipt and the completion mail went out once each, on the high lane, recorded
    assert [m.template for m in sender.sent] == ["receipt", "application_complete"]
    assert {m.lane for m in sender.sent} == {"high"}
    assert [(e.template, e.application_id) for e in record.recorded] == [
        ("receipt", "app-4"),
        ("application_complete", "app-4"),
    ]
    # And no event announces them: the record is what the API's status history reads
    assert first.outgoing == []

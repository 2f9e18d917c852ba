"""Announcements through a fake unit of work (ledger, record of sent mail) and the in-memory
sender: who is mailed, who is not, and that a delivery done before sends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.mailer.announcements import Announcements, delivery_message_id
from services.mailer.smtp import MemorySender
from shared.consumer.runtime import MessageContext
from shared.events.catalog import AnnouncementDelivery, AnnouncementPublished, Audience
from shared.events.envelope import new_envelope
from shared.system_topology import MAILER_LANES
from shared.unsubscribe import UnsubscribeSigner
from tests.unit.mailer.test_handler import FakeMailerWork, FakeSentEmails, mailer

ANNOUNCEMENT = "ann-1"


@dataclass
class FakeLedger:
    audience_pages: list[list[str]] = field(default_factory=list)
    cancelled: bool = False
    opted_out: set[str] = field(default_factory=set)
    runs: dict[str, int] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)

    async def start_run(self, announcement_id: str) -> bool:
        if announcement_id in self.runs:
            return False
        self.runs[announcement_id] = 0
        return True

    async def set_total(self, announcement_id: str, total: int) -> None:
        self.runs[announcement_id] = total

    async def audience(self, views: str, audience: Audience) -> AsyncIterator[list[str]]:
        for page in self.audience_pages:
            yield page

    async def state(self, views: str, announcement_id: str, recipient: str) -> tuple[bool, bool]:
        return self.cancelled, recipient in self.opted_out

    async def record(self, announcement_id: str, recipient: str, outcome: str) -> None:
        self.outcomes.setdefault((announcement_id, recipient), outcome)

    async def record_sent(self, announcement_id: str, recipient: str) -> bool:
        if (announcement_id, recipient) in self.outcomes:
            return False
        self.outcomes[(announcement_id, recipient)] = "sent"
        return True

    async def record_refused(self, announcement_id: str, recipient: str) -> None:
        self.outcomes[(announcement_id, recipient)] = "refused"


class FakeWork(FakeMailerWork):
    def __init__(self, ledger: FakeLedger, sent: FakeSentEmails) -> None:
        super().__init__(sent)
        self.announcements = ledger


def announcements(sender: MemorySender) -> Announcements:
    return Announcements(mailer(sender), UnsubscribeSigner(b"k" * 32))


def delivery(recipient: str) -> AnnouncementDelivery:
    return AnnouncementDelivery(
        announcement_id=ANNOUNCEMENT, recipient=recipient, subject="Open day", body="Come by."
    )


def context(
    work: FakeWork, payload: AnnouncementDelivery | AnnouncementPublished
) -> MessageContext[FakeWork]:
    return MessageContext(new_envelope(payload), payload, 1, MAILER_LANES["batch"], work)


async def test_an_announcement_expands_once_into_one_delivery_per_recipient() -> None:
    ledger = FakeLedger(audience_pages=[["a@example.org", "b@example.org"], ["c@example.org"]])
    published = AnnouncementPublished(announcement_id=ANNOUNCEMENT, subject="S", body="B")
    first = context(FakeWork(ledger, FakeSentEmails()), published)
    again = context(FakeWork(ledger, FakeSentEmails()), published)
    handler = announcements(MemorySender())
    await handler.expand(first, published)
    await handler.expand(again, published)
    assert ledger.runs == {ANNOUNCEMENT: 3}
    recipients = ("a@example.org", "b@example.org", "c@example.org")
    assert [e.message_id for e in first.tx.outbox] == [
        delivery_message_id(ANNOUNCEMENT, r) for r in recipients
    ]
    assert again.tx.outbox == []


async def test_each_recipient_is_mailed_once_and_the_others_are_recorded_not_mailed() -> None:
    ledger, sent, sender = (
        FakeLedger(opted_out={"gone@example.org"}),
        FakeSentEmails(),
        MemorySender(),
    )
    handler = announcements(sender)
    for recipient in ("ada@example.org", "gone@example.org", "ada@example.org"):
        payload = delivery(recipient)
        await handler.deliver(context(FakeWork(ledger, sent), payload), payload)
    assert [mail.recipients for mail in sender.sent] == [("ada@example.org",)]
    assert ledger.outcomes == {
        (ANNOUNCEMENT, "ada@example.org"): "sent",
        (ANNOUNCEMENT, "gone@example.org"): "unsubscribed",
    }


async def test_a_cancelled_announcement_mails_nobody() -> None:
    ledger, sender = FakeLedger(cancelled=True), MemorySender()
    payload = delivery("ada@example.org")
    await announcements(sender).deliver(
        context(FakeWork(ledger, FakeSentEmails()), payload), payload
    )
    assert sender.sent == []
    assert ledger.outcomes == {(ANNOUNCEMENT, "ada@example.org"): "cancelled"}

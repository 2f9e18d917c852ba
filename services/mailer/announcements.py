"""Announcements on the batch lane: ``announcement.published`` is expanded into one
``announcement.delivery`` per recipient, and each delivery is mailed at the lane's rate.

Expansion: the recipients are read from the API's ``announcement_audience`` view through a
server-side cursor, a page at a time, and written to the mailer's own outbox in the message's
transaction (memory stays flat whatever the audience). Each delivery's message id is derived
from (announcement, recipient): an announcement expanded twice yields the same messages, and
the consumers' claim drops the copies. ``announcement_runs`` records the expansion and its
total; a second expansion of the same announcement stops there.

Delivery: every recipient gets the mail, under one Message-ID whatever is killed when (the
way every mail of the mailer goes out, ``services.mailer.handler``):

1. cancelled, or the recipient has unsubscribed since: recorded (``cancelled`` /
   ``unsubscribed``), no mail, no token;
2. the lane's token is taken (``Mailer.send``), then the ledger row ``sent`` is written in the
   message's transaction, beside the mail's record, right before the SMTP call;
3. the transaction commits once SMTP accepted the mail, and the message is acknowledged.

A mailer killed before the commit leaves neither row, so the broker's redelivery mails the
recipient (again, if the server had taken it before the kill) under the same Message-ID: the
delivery's message id is derived from (announcement, recipient), the Message-ID from it, and
receiving systems and the audit count a copy as the same mail. A delivery that finds its row
committed was done before and sends nothing; one that finds it being written by another
transaction waits for that one. A permanent refusal is ``refused``; a transient SMTP failure
rolls everything back and the message is dead-lettered, to be replayed from the admin API.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import structlog

from services.mailer.catalog import announcement_email
from services.mailer.handler import Mailer, MailerWork
from services.mailer.smtp import RecipientRefused
from shared.consumer.runtime import MessageContext
from shared.events.catalog import AnnouncementDelivery, AnnouncementPublished
from shared.events.envelope import Envelope, new_envelope
from shared.unsubscribe import UnsubscribeSigner

log = structlog.get_logger("mailer.announcements")

_DELIVERY_IDS = uuid.UUID("5b0e7f43-3d52-4c1e-9a57-6f1f3b8a2c11")


def delivery_message_id(announcement_id: str, recipient: str) -> uuid.UUID:
    """The same (announcement, recipient) always gets the same message id."""
    return uuid.uuid5(_DELIVERY_IDS, f"{announcement_id}\n{recipient.lower()}")


@dataclass(frozen=True)
class Announcements:
    mailer: Mailer
    unsubscribe: UnsubscribeSigner
    api_schema: str = "api"

    async def expand(self, ctx: MessageContext[MailerWork], payload: AnnouncementPublished) -> None:
        ledger = ctx.tx.announcements
        if not await ledger.start_run(payload.announcement_id):
            log.info("announcement already expanded", announcement_id=payload.announcement_id)
            return
        started = time.monotonic()
        cancelled, _ = await ledger.state(self.api_schema, payload.announcement_id, "")
        total = 0
        if not cancelled:
            async for page in ledger.audience(self.api_schema, payload.audience):
                await ctx.tx.add_outbox([self._delivery(ctx, payload, email) for email in page])
                total += len(page)
        await ledger.set_total(payload.announcement_id, total)
        log.info(
            "announcement expanded",
            announcement_id=payload.announcement_id,
            recipients=total,
            cancelled=cancelled,
            seconds=round(time.monotonic() - started, 3),
        )

    def _delivery(
        self, ctx: MessageContext[MailerWork], payload: AnnouncementPublished, email: str
    ) -> Envelope:
        delivery = AnnouncementDelivery(
            announcement_id=payload.announcement_id,
            recipient=email,
            subject=payload.subject,
            body=payload.body,
        )
        return new_envelope(
            delivery,
            correlation_id=ctx.envelope.correlation_id,
            causation_id=str(ctx.envelope.message_id),
            message_id=delivery_message_id(payload.announcement_id, email),
        )

    async def deliver(self, ctx: MessageContext[MailerWork], payload: AnnouncementDelivery) -> None:
        ledger = ctx.tx.announcements
        key = (payload.announcement_id, payload.recipient)
        cancelled, opted_out = await ledger.state(self.api_schema, *key)
        if cancelled or opted_out:
            outcome = "cancelled" if cancelled else "unsubscribed"
            await ledger.record(*key, outcome)
            log.info("announcement not sent", announcement_id=key[0], outcome=outcome)
            return

        async def record_sent() -> bool:
            """The ledger row, in the message's transaction: committed with the mail's record
            once SMTP took the mail; False (no mail) if an earlier attempt committed it."""
            if not await ledger.record_sent(*key):
                log.info("announcement delivered before", announcement_id=key[0])
                return False
            return True

        spec = announcement_email(
            payload, self.unsubscribe.url(self.mailer.api_public_url, payload.recipient)
        )
        try:
            await self.mailer.send(ctx, spec, before_smtp=record_sent)
        except RecipientRefused:
            # Acknowledged, not dead-lettered: this address never takes mail.
            await ledger.record_refused(*key)

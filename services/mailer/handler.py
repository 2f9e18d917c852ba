"""The mailer's message handler: event -> rendered mails -> token -> SMTP -> record.

Runs inside the message's transaction (the runtime claims the message id first, so a
redelivered event never gets here twice). If a mail went out but the transaction did not
commit (a crash), the redelivery sends it again with the same Message-ID.

The record of sent mail is the whole announcement: the API shows an application's mails in its
status history through a read-only view of that record (``application_mail``), so no event
per mail crosses the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import jinja2
import structlog

from services.mailer.announcement_ledger import AnnouncementLedger, PostgresAnnouncementLedger
from services.mailer.catalog import EmailSpec, emails_for
from services.mailer.rate_limit import RateLimiter
from services.mailer.rendering import render_email
from services.mailer.report_runs import PostgresReportRuns, ReportRuns
from services.mailer.sent_emails import PostgresSentEmails, SentEmail, SentEmails
from services.mailer.smtp import MailSender
from shared.consumer.runtime import MessageContext
from shared.consumer.transaction import Transaction
from shared.db.transactions import PostgresTransaction
from shared.events.sealed import SecretSealer
from shared.metrics import Metrics, metrics_for

log = structlog.get_logger("mailer")


def lane_wait_seconds(occurred_at: datetime, now: datetime) -> float:
    """How long the mail waited since its event happened (an envelope without a time zone
    is read as UTC)."""
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return max(0.0, (now - occurred_at).total_seconds())


class MailerWork(Transaction, Protocol):
    """The mailer's unit of work: the message's transaction and the record of sent mail."""

    @property
    def sent_emails(self) -> SentEmails: ...

    @property
    def announcements(self) -> AnnouncementLedger: ...

    @property
    def report_runs(self) -> ReportRuns: ...


class MailerTransaction(PostgresTransaction):
    @property
    def sent_emails(self) -> PostgresSentEmails:
        return PostgresSentEmails(self.connection)

    @property
    def announcements(self) -> PostgresAnnouncementLedger:
        return PostgresAnnouncementLedger(self.connection)

    @property
    def report_runs(self) -> PostgresReportRuns:
        return PostgresReportRuns(self.connection)


@dataclass(frozen=True)
class Mailer:
    templates: jinja2.Environment
    sender: MailSender
    rate_limiter: RateLimiter
    mail_from: str
    api_public_url: str
    sealer: SecretSealer
    # The lane wait itself is measured by the runtime's metrics observer; this adds its part
    # spent on the shared token bucket.
    metrics: Metrics = field(default_factory=metrics_for)

    async def handle(self, ctx: MessageContext[MailerWork]) -> None:
        specs = emails_for(ctx.payload, api_public_url=self.api_public_url, sealer=self.sealer)
        if not specs:
            log.info("no email for this event", event_type=ctx.envelope.type)
        for spec in specs:
            await self.send(ctx, spec)

    async def send(
        self,
        ctx: MessageContext[MailerWork],
        spec: EmailSpec,
        *,
        before_smtp: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Send ``spec`` (once its lane's token is taken); whether it was handed to SMTP now.
        ``before_smtp`` runs after the token, right before the SMTP call, in the message's
        transaction, and may call it off (an announcement's ledger says it was delivered)."""
        lane = ctx.queue.lane or ctx.queue.name
        mail = render_email(
            self.templates,
            spec,
            event_message_id=str(ctx.envelope.message_id),
            lane=lane,
            sender=self.mail_from,
        )
        message_id_header = mail.message_id
        # The runtime's claim already dedups redeliveries; the record also covers one that
        # comes back after the sweeper trimmed the claim (one statement: insert or find).
        record = SentEmail(
            message_id_header, spec.template, spec.recipient, lane, spec.application_id
        )
        if not await ctx.tx.sent_emails.record(record):
            log.info("already sent", message_id_header=message_id_header)
            return False

        rate_wait = await self.rate_limiter.acquire(lane)
        self.metrics.record_rate_limit_wait(lane, rate_wait)
        waited = lane_wait_seconds(ctx.envelope.occurred_at, datetime.now(UTC))
        if before_smtp is not None and not await before_smtp():
            # Called off: an earlier message delivered it; its record commits as that one's did.
            return False
        await self.sender.send(mail)
        log.info(
            "email sent",
            template=spec.template,
            lane=lane,
            message_id_header=message_id_header,
            application_id=spec.application_id,
            lane_wait_seconds=round(waited, 4),
            rate_wait_seconds=round(rate_wait, 4),
        )
        sla = ctx.queue.sla_seconds
        if sla is not None and waited > sla:
            log.warning(
                "sla breached", lane=lane, sla_seconds=sla, lane_wait_seconds=round(waited, 4)
            )
        return True

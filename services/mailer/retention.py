"""How long the mailer's tables keep their rows, swept by its sweeper."""

from __future__ import annotations

from datetime import timedelta

from services.mailer.settings import MailerSettings
from shared.retention import RetentionRule


def mailer_retention(settings: MailerSettings) -> tuple[RetentionRule, ...]:
    return (
        RetentionRule("sent_emails", "sent_at", timedelta(days=settings.sent_email_retention_days)),
    )

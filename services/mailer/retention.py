"""How long the mailer's tables keep their rows, swept by its sweeper.

A report's run goes ``REPORT_RETENTION_DAYS`` after its link expired (a failed one after it
failed, one never finished after it started); its file goes before, when the link expires: the
API's blob sweeper keeps only files that a run with a live link references
(``services/api/blob_references.py``), so a file never outlives its run. An announcement's
expansion and each delivery's ledger row go ``ANNOUNCEMENT_RETENTION_DAYS`` after they were
written: the ledger of an announcement is gone that long after its last mail, and the API's
announcement, aged from its publication, before any of it (a status is never shown half
swept). A late redelivery still finds ``sent_emails``, kept a year, and sends nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from services.mailer.settings import MailerSettings
from shared.retention import RetentionRule


def mailer_retention(settings: MailerSettings) -> tuple[RetentionRule, ...]:
    reports = timedelta(days=settings.report_retention_days)
    announcements = timedelta(days=settings.announcement_retention_days)
    return (
        RetentionRule("sent_emails", "sent_at", timedelta(days=settings.sent_email_retention_days)),
        RetentionRule("report_runs", "expires_at", reports, or_else=("finished_at", "started_at")),
        RetentionRule("announcement_runs", "expanded_at", announcements),
        RetentionRule("announcement_deliveries", "updated_at", announcements),
    )

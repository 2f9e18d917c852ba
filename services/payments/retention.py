"""How long the payments service's tables keep their rows, swept by its sweeper. ``payments``
is the record of money taken: not swept."""

from __future__ import annotations

from datetime import timedelta

from services.payments.settings import PaymentsSettings
from shared.retention import RetentionRule


def payments_retention(settings: PaymentsSettings) -> tuple[RetentionRule, ...]:
    return (
        RetentionRule(
            "early_webhooks",
            "received_at",
            timedelta(days=settings.early_webhook_retention_days),
        ),
    )

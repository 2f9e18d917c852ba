"""How long the API's tables keep their rows (settings in ``ApiSettings``), swept by the
projector's sweeper. ``application*`` tables and ``users`` are the record itself: not swept;
nor is ``announcement_opt_outs``: who unsubscribed stays unsubscribed."""

from __future__ import annotations

from datetime import timedelta

from services.api.settings import ApiSettings
from shared.retention import RetentionRule


def api_retention(settings: ApiSettings) -> tuple[RetentionRule, ...]:
    expired_secrets = timedelta(hours=settings.expired_secret_retention_hours)
    return (
        RetentionRule(
            "idempotency_keys",
            "created_at",
            timedelta(hours=settings.idempotency_key_retention_hours),
        ),
        RetentionRule("password_reset_tokens", "expires_at", expired_secrets),
        RetentionRule("otp_codes", "expires_at", expired_secrets),
        RetentionRule(
            "webhook_events", "received_at", timedelta(days=settings.webhook_event_retention_days)
        ),
        RetentionRule(
            "replays", "requested_at", timedelta(days=settings.replay_audit_retention_days)
        ),
        # The mailer keeps the runs and ledgers behind them as long from later moments.
        RetentionRule("reports", "created_at", timedelta(days=settings.report_retention_days)),
        RetentionRule(
            "announcements", "created_at", timedelta(days=settings.announcement_retention_days)
        ),
        # Counters whose window is over count nothing any more.
        RetentionRule("rate_limits", "window_ends", timedelta(0)),
        RetentionRule(
            "login_failures",
            "window_started",
            timedelta(seconds=settings.login_failure_window_seconds),
        ),
    )

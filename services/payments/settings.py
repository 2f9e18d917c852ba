"""The payments service's settings (environment variable = field name upper-cased)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CoreSettings


class PaymentsSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    production_secrets: ClassVar[tuple[str, ...]] = ("payments_db_password", "event_public_keys")

    psp_url: str = "http://127.0.0.1:8100"
    # Per request to the provider; a slower answer counts as the provider being unavailable.
    psp_timeout_seconds: float = Field(default=10.0, gt=0)
    application_fee_cents: int = Field(default=5000, gt=0)
    application_fee_currency: str = "EUR"
    # Extra latency around each provider call, for benchmarks.
    payment_simulated_ms: int = Field(default=0, ge=0)
    # A provider webhook parked in early_webhooks settles its payment the moment the payment
    # row exists; one whose payment never came in this long is swept (the sweeper logs counts)
    # (services/payments/retention.py).
    early_webhook_retention_days: float = Field(default=30.0, ge=1)

"""The mailer's settings: SMTP server, lanes to consume, per-lane rate limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, PositiveFloat, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import CoreSettings
from shared.system_topology import MAILER_LANES

ALL_LANES: tuple[str, ...] = tuple(MAILER_LANES)


class MailerSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    production_secrets: ClassVar[tuple[str, ...]] = (
        "mailer_db_password",
        "event_public_keys",
        "mail_seal_key",
    )

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0
    # SMTP sessions each lane keeps open and reuses: at most this many of its mails are
    # handed to the server at once.
    smtp_sessions_per_lane: int = Field(default=4, ge=1)
    # Added to every send, so benchmarks can model a slow provider.
    smtp_simulated_ms: int = 0
    mail_from: str = "Admissions Office <no-reply@admissions.local>"
    api_public_url: str = "http://127.0.0.1:8000"
    # Opens the reset tokens and one-time codes the API sealed (shared/events/sealed.py).
    mail_seal_key: SecretStr = SecretStr("")
    # sent_emails rows (the mails an application's status history shows, and the record that
    # a mail went out) older than this are swept (services/mailer/retention.py).
    sent_email_retention_days: float = Field(default=365.0, ge=1)

    # Reports (low lane): files go to the blob store the API serves them from, and the link
    # in the mail works this long.
    blob_dir: Path = Path(".run/blobs")
    blob_fsync: bool = True
    report_link_ttl_hours: PositiveFloat = 72.0
    # How long the records of reports and announcements stay (services/mailer/retention.py):
    # a report's run this long after its link expired (or it failed), an announcement's
    # expansion and delivery ledger this long after it went out. The API keeps its side (the
    # request, the announcement) as long from when it was asked, so it goes first: it never
    # shows a request whose progress is gone. Read by both services.
    report_retention_days: float = Field(default=30.0, ge=1)
    announcement_retention_days: float = Field(default=90.0, ge=1)
    # The schemas whose read-only views reports and announcements read (each service's role).
    api_schema: str = "api"
    payments_schema: str = "payments"
    report_dead_letter_schemas: Annotated[list[str], NoDecode] = [
        "api",
        "verifier",
        "payments",
        "mailer",
    ]

    # Which lanes this process consumes ("critical,high"), so lanes can scale separately.
    mailer_lanes: Annotated[list[str], NoDecode] = list(ALL_LANES)

    # Messages per second each lane may send, across every mailer replica. The defaults leave
    # room for the drain target (100 applications/s: 3 mails each on the high lane, 1 on the
    # medium one); a provider's own limits are set here per deployment.
    mailer_rate_critical: PositiveFloat = 50.0
    mailer_rate_high: PositiveFloat = 400.0
    mailer_rate_medium: PositiveFloat = 200.0
    mailer_rate_low: PositiveFloat = 10.0
    mailer_rate_batch: PositiveFloat = 20.0
    # How many seconds of the rate an idle lane may save up and send at once.
    mailer_rate_burst_seconds: PositiveFloat = 1.0
    # Tokens a replica takes from a lane's shared bucket per statement (never more than the
    # bucket holds), then hands to its mails one by one.
    mailer_token_block: int = Field(default=8, ge=1)

    @field_validator("mailer_lanes", "report_dead_letter_schemas", mode="before")
    @classmethod
    def _split_lanes(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("mailer_lanes")
    @classmethod
    def _known_lanes(cls, lanes: list[str]) -> list[str]:
        unknown = sorted(set(lanes) - set(ALL_LANES))
        if unknown:
            raise ValueError(f"unknown lanes {unknown}; choose from {list(ALL_LANES)}")
        if not lanes:
            raise ValueError("at least one lane")
        return list(dict.fromkeys(lanes))

    def rate(self, lane: str) -> float:
        rate: float = getattr(self, f"mailer_rate_{lane}")
        return rate

    def capacity(self, lane: str) -> float:
        """At least one token, or an empty bucket could never grant anything."""
        return max(1.0, self.rate(lane) * self.mailer_rate_burst_seconds)

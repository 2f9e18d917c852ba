"""The api service's settings (HTTP API and projector): env var = field name upper-cased."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.manifest import outbox_sources
from shared.settings import CoreSettings

MIB = 1024 * 1024


class ApiSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    production_secrets: ClassVar[tuple[str, ...]] = (
        "api_db_password",
        "ops_db_password",
        "jwt_secret",
        "webhook_secret",
        "admin_password",
        "rabbitmq_management_password",
        "mail_seal_key",
        "ops_rabbitmq_url",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    # Absolute URLs handed to clients (statusUrl, payUrl) start with this.
    api_public_url: str = "http://127.0.0.1:8000"
    api_access_log: bool = False
    # The reverse proxies whose X-Forwarded-For gives the client's address (login throttle,
    # rate limits): comma-separated addresses or networks, e.g. nginx's compose network. Left
    # at loopback behind a proxy elsewhere, every client would share the proxy's address and
    # five wrong passwords would lock anyone out. "*" only when nothing but the proxy reaches
    # the API.
    forwarded_allow_ips: str = "127.0.0.1"

    # The Postgres login role, and so the schema (search_path "$user") and the outbox the API
    # writes to. Tests point it at a throw-away role; its password is API_DB_PASSWORD.
    db_role: str = "api"

    # The mailer's schema, whose read-only views add the mail sent to an application's status
    # history (``application_mail``) and show the progress of reports and announcements
    # (``report_status``, ``announcement_progress``); none: the history shows no mail, and
    # reports and announcements answer 503.
    mail_history_schema: str | None = "mailer"

    jwt_secret: SecretStr = SecretStr("dev-jwt-secret")
    jwt_ttl_minutes: int = 60
    webhook_secret: SecretStr = SecretStr("dev-webhook-secret")
    webhook_tolerance_seconds: int = 300
    admin_email: str = "admin@example.org"
    admin_password: SecretStr = SecretStr("admin-dev-password")
    password_reset_ttl_minutes: int = 60
    # /auth/token: this many wrong passwords per (client address, e-mail) within the window,
    # then 429 until it ends (services/api/auth/throttle.py).
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: float = Field(default=60.0, gt=0)
    otp_ttl_minutes: int = 10
    # /auth/otp/verify: wrong tries allowed per code before it is spent (a new one must be
    # asked for); tries per user are also rate-limited below.
    otp_max_attempts: int = Field(default=5, ge=1)
    # Seals reset tokens and one-time codes for the mailer (shared/events/sealed.py); the
    # mailer holds the same key. Empty: the development key, refused in production.
    mail_seal_key: SecretStr = SecretStr("")
    # Flood limits (services/api/rate_limits.py): 429 + Retry-After past these counts, shared by
    # every replica through Postgres; 0 is no limit. RATE_LIMITS=0 turns them all off (load
    # generators that send everything from one address as one applicant).
    rate_limits: bool = True
    registrations_per_address_per_hour: int = Field(default=20, ge=0)
    logins_per_address_per_minute: int = Field(default=60, ge=0)
    password_resets_per_email_per_hour: int = Field(default=3, ge=0)
    password_resets_per_address_per_hour: int = Field(default=20, ge=0)
    otp_requests_per_user_per_hour: int = Field(default=10, ge=0)
    otp_verifications_per_user_per_hour: int = Field(default=20, ge=0)
    submissions_per_applicant_per_hour: int = Field(default=60, ge=0)
    # Argon2 hashes (64 MiB each) computed at once per replica; requests beyond these plus
    # ``password_hash_queue`` waiting get a quick 503 + Retry-After (auth/passwords.py).
    password_hash_concurrency: int = Field(default=2, ge=1)
    password_hash_queue: int = Field(default=64, ge=0)

    blob_dir: Path = Path(".run/blobs")
    blob_fsync: bool = True
    # Threads that make uploaded files durable (fsync) for one API process (shared/blobs.py).
    blob_sync_threads: int = Field(default=1, ge=1)
    # A submission whose body stops arriving for this long is refused (408), its files dropped.
    api_upload_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    # Overload (services/api/applications/accept.py): submissions one API process reads and
    # writes at once; one more is answered 503 with Retry-After instead of queueing.
    api_max_submissions_in_flight: int = Field(default=32, ge=1)
    # Retry-After of that 503: this at first, longer while the overload lasts, up to the max.
    api_busy_retry_after_seconds: int = Field(default=1, ge=1)
    api_busy_retry_after_max_seconds: int = Field(default=60, ge=1)
    # Group commit: submissions written by one statement, at most.
    api_group_commit_max_rows: int = Field(default=64, ge=1)
    # The projector's blob sweeper removes blobs no row references, and abandoned upload
    # temporary files, once they are this old (shared/blob_sweeper.py), on SWEEPER_SCHEDULE.
    blob_orphan_grace_minutes: float = Field(default=60.0, ge=0)
    # Retention of the API's tables (services/api/retention.py), swept by the projector on
    # SWEEPER_SCHEDULE. Idempotency keys outlive any client's retries of one submission;
    # reset tokens and one-time codes are kept this long after they expire (support
    # questions), never used again; a webhook event id outlives the provider's retries (and
    # its signed timestamp refuses a replay after WEBHOOK_TOLERANCE_SECONDS anyway); replays
    # are the operators' audit trail.
    idempotency_key_retention_hours: float = Field(default=168.0, ge=1)
    expired_secret_retention_hours: float = Field(default=24.0, ge=0)
    webhook_event_retention_days: float = Field(default=30.0, ge=1)
    replay_audit_retention_days: float = Field(default=365.0, ge=1)
    # Reports asked for and announcements published, from when they were: the mailer keeps
    # their runs and ledgers as long from later moments (services/mailer/settings.py), so the
    # request goes first and never shows progress that is gone.
    report_retention_days: float = Field(default=30.0, ge=1)
    announcement_retention_days: float = Field(default=90.0, ge=1)

    max_files: int = 5
    max_file_bytes: int = 10 * MIB
    max_field_bytes: int = 64 * 1024

    readiness_timeout_seconds: float = 1.0
    # How long a request waits for a database connection: when Postgres is down, answer 503
    # quickly instead of holding the client (and a worker slot) for the pool's default 10 s.
    api_db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    # ... but when every connection is alive and busy (a burst, not an outage), keep waiting up
    # to this long before the 503 (services/api/pooling.py).
    api_db_overload_wait_seconds: float = Field(default=30.0, ge=0)

    # Operations (/admin): the RabbitMQ management HTTP API (the vhost is RABBITMQ_URL's), and
    # the read-only role that sees the outbox, message_log and queue_controls of ``ops_schemas``.
    # A cluster: every node's, comma-separated (the first that answers is asked).
    rabbitmq_management_url: str = "http://127.0.0.1:15672/"
    rabbitmq_management_user: str = "guest"
    rabbitmq_management_password: SecretStr = SecretStr("guest")
    # The broker login of dead-letter listings, replays and pause / resume: ``ops`` in the
    # definitions (deploy/definitions/), apart from RABBITMQ_URL's api login, which reads no
    # dead-letter queue because reading one also allows purging it. Unset: RABBITMQ_URL's login
    # (a development broker's administrator does it all; the api login is refused: 503).
    ops_rabbitmq_url: SecretStr | None = None
    ops_db_role: str = "ops"
    # By default every service's schema that has an outbox (``shared.manifest``).
    ops_schemas: list[str] = Field(default_factory=outbox_sources)
    # Dead-letter listings and replays read at most this many messages of a DLQ per request.
    admin_dead_letter_scan: int = Field(default=1000, ge=1, le=100_000)

    def db_password(self, service: str) -> str:
        """The API logs in as ``db_role`` with ``API_DB_PASSWORD``, whatever the role is named."""
        if service == self.db_role:
            return super().db_password("api")
        return super().db_password(service)

    @property
    def max_body_bytes(self) -> int:
        """Every file at its limit, plus room for the text fields and multipart framing."""
        return self.max_files * self.max_file_bytes + MIB

    @property
    def public_url(self) -> str:
        return self.api_public_url.rstrip("/")


class ProjectorSettings(ApiSettings):
    """The projector works as the API's role on the API's tables, but serves no HTTP: it needs
    none of the HTTP secrets (and is not given them in deployments)."""

    production_secrets: ClassVar[tuple[str, ...]] = ("api_db_password", "event_public_keys")

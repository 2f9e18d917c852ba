"""The sandbox PSP's settings (environment variable = field name upper-cased)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    """The sandbox stands in for an external provider: it has no broker and no database of
    ours, so it reads only these, not ``CoreSettings``."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    log_level: str = "INFO"
    psp_host: str = "127.0.0.1"
    psp_port: int = 8100
    # Where browsers reach the checkout pages; default: this server's own address.
    psp_public_url: str | None = None
    psp_data_dir: Path = Path(".run/psp")
    psp_latency_ms: int = Field(default=0, ge=0)
    psp_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    psp_autopay: bool = False
    psp_autopay_delay_ms: int = Field(default=200, ge=0)
    api_public_url: str = "http://127.0.0.1:8000"
    # Where webhooks go; default: the API's /webhooks/payments.
    webhook_url: str | None = None
    webhook_secret: SecretStr = SecretStr("dev-webhook-secret")
    # Delivered webhooks are forgotten after this (undelivered ones are kept until delivered).
    psp_delivered_webhook_retention_hours: float = Field(default=24.0, ge=0)

    @property
    def public_url(self) -> str:
        return (self.psp_public_url or f"http://{self.psp_host}:{self.psp_port}").rstrip("/")

    @property
    def webhook_target(self) -> str:
        return self.webhook_url or f"{self.api_public_url.rstrip('/')}/webhooks/payments"

    @property
    def database_path(self) -> Path:
        return self.psp_data_dir / "payments.sqlite3"

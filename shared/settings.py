"""Typed settings, read from the environment once by a service's composition root and
passed down. Nothing here is read at import time."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("api", "relay", "verifier", "payments", "mailer")


class CoreSettings(BaseSettings):
    """What every service needs: where the broker and the database are, how to log."""

    model_config = SettingsConfigDict(extra="ignore")

    app_env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # The admin URL: migrations use it as is; services keep its server and database and log in
    # as their own role (<SERVICE>_DB_PASSWORD).
    database_url: SecretStr = SecretStr("postgresql://postgres:postgres@127.0.0.1:5432/admissions")
    api_db_password: SecretStr = SecretStr("api-dev-password")
    relay_db_password: SecretStr = SecretStr("relay-dev-password")
    verifier_db_password: SecretStr = SecretStr("verifier-dev-password")
    payments_db_password: SecretStr = SecretStr("payments-dev-password")
    mailer_db_password: SecretStr = SecretStr("mailer-dev-password")
    # The read-only operators' role (outbox, message_log, queue_controls of every schema).
    ops_db_password: SecretStr = SecretStr("ops-dev-password")
    db_pool_max: int = 10

    sweeper_schedule: str = "*/15 * * * *"
    sweeper_retention_hours: float = 168.0

    # Workers serve Prometheus /metrics on this port when it is set (the API uses its own port).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def db_password(self, service: str) -> str:
        password: SecretStr = getattr(self, f"{service}_db_password")
        return password.get_secret_value()

    @property
    def sweeper_retention(self) -> timedelta:
        return timedelta(hours=self.sweeper_retention_hours)

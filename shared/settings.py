"""Typed settings, read from the environment once by a service's composition root and
passed down. Nothing here is read at import time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.broker.nodes import node_urls, parse_nodes
from shared.manifest import SERVICES, ServiceSpec, service_names


def database_password_settings(services: Sequence[ServiceSpec]) -> type[BaseSettings]:
    """Settings with one ``<service>_db_password`` field per service of the manifest
    (``<SERVICE>_DB_PASSWORD``), each defaulting to its development password."""
    fields: dict[str, Any] = {
        service.db_password_setting: (SecretStr, SecretStr(f"{service.name}-dev-password"))
        for service in services
    }
    return create_model("DatabasePasswords", __base__=BaseSettings, **fields)


# mypy sees a plain BaseSettings; the fields are read by name (``CoreSettings.db_password``).
if TYPE_CHECKING:
    _DatabasePasswords = BaseSettings
else:
    _DatabasePasswords = database_password_settings(SERVICES)


class CoreSettings(_DatabasePasswords):
    """What every service needs: where the broker and the database are, how to log.

    With ``APP_ENV=production`` a service refuses to start while a secret it uses is still at
    its development default (or empty), and names each one: the broker URL (``guest:guest``,
    the broker's well-known login, counts as a default) and the fields the service's own
    class lists in ``production_secrets``.
    """

    # hide_input_in_errors: a validation error must not print the secrets it was given.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)
    # Field names of the secrets this service uses besides RABBITMQ_URL (its DB password, ...).
    production_secrets: ClassVar[tuple[str, ...]] = ()

    app_env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # A cluster's nodes, "host:port,host:port,...": RABBITMQ_URL's login and virtual host on
    # each; a service connects to one and moves to the next when it is lost. Empty: only
    # RABBITMQ_URL's own host.
    rabbitmq_nodes: str = ""
    # The admin URL: migrations use it as is; services keep its server and database and log in
    # as their own role (<SERVICE>_DB_PASSWORD).
    database_url: SecretStr = SecretStr("postgresql://postgres:postgres@127.0.0.1:5432/admissions")
    # Each service's role's password, <SERVICE>_DB_PASSWORD: fields of ``_DatabasePasswords``.
    # The read-only operators' role (outbox, message_log, queue_controls of every schema).
    ops_db_password: SecretStr = SecretStr("ops-dev-password")
    db_pool_max: int = 10
    # The publishers' public keys consumers verify events with (``shared.events.signing``):
    # ``service=<base64>,...``; empty means the development keys, refused in production by
    # every service that consumes.
    event_public_keys: str = ""

    sweeper_schedule: str = "*/15 * * * *"
    sweeper_retention_hours: float = 168.0

    # Workers serve Prometheus /metrics on this port when it is set (the API uses its own port).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    # Fault injection for chaos runs (shared.faults), off by default: a probability of a
    # transient failure and added latency per handler, provider call and SMTP send.
    fault_handler_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_handler_latency_ms: float = Field(default=0.0, ge=0)
    fault_provider_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_provider_latency_ms: float = Field(default=0.0, ge=0)
    fault_smtp_failure_rate: float = Field(default=0.0, ge=0, le=1)
    fault_smtp_latency_ms: float = Field(default=0.0, ge=0)
    fault_seed: int | None = None

    @field_validator("rabbitmq_nodes")
    @classmethod
    def _valid_node_list(cls, nodes: str) -> str:
        parse_nodes(nodes)  # InvalidNodeList (a ValueError) names the bad entry
        return nodes

    def broker_urls(self, url: SecretStr | None = None) -> list[str]:
        """``url`` (by default RABBITMQ_URL) on every node of RABBITMQ_NODES."""
        return node_urls((url or self.rabbitmq_url).get_secret_value(), self.rabbitmq_nodes)

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Self:
        if self.app_env == "production":
            weak = development_secrets(self, ("rabbitmq_url", *self.production_secrets))
            if weak:
                names = ", ".join(name.upper() for name in weak)
                raise ValueError(
                    f"APP_ENV=production refuses development secrets: {names} "
                    "(set each to a secret of its own)"
                )
        return self

    def db_password(self, service: str) -> str:
        """The password of a service's role (``ops`` too): its ``<service>_db_password`` field."""
        password: SecretStr = getattr(self, f"{service}_db_password")
        return password.get_secret_value()

    @property
    def sweeper_retention(self) -> timedelta:
        return timedelta(hours=self.sweeper_retention_hours)


def _plain(value: Any) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")


# Passwords the project or its servers ship with, whatever field they end up in.
KNOWN_DEVELOPMENT_VALUES = frozenset(
    {"guest", "postgres", "password", "secret", "changeme", "admin", "dev-jwt-secret"}
    | {"dev-webhook-secret"}
    | {f"{user}-dev-password" for user in (*service_names(), "ops", "operator", "admin")}
)
# Shorter than this, a secret can be guessed (URLs: their password).
MIN_SECRET_CHARS = 16


def is_development_value(value: str) -> bool:
    lowered = value.lower()
    return lowered in KNOWN_DEVELOPMENT_VALUES or lowered.endswith("-dev-password")


def development_secrets(settings: BaseSettings, names: tuple[str, ...]) -> list[str]:
    """The fields among ``names`` that are weak: empty, still at their declared default, a
    known development value (any service's, not only their own), or shorter than
    ``MIN_SECRET_CHARS``. For a URL the password counts: a broker URL without one logs in as
    guest; and ``database_url`` (which services may be given without credentials) is checked
    too whenever it carries a password. An optional secret (``None`` by default) left unset
    is not weak: the feature it unlocks is off."""
    fields = type(settings).model_fields
    weak = []
    for name in names:
        if getattr(settings, name) is None and fields[name].default is None:
            continue
        value = _plain(getattr(settings, name))
        default = value == _plain(fields[name].default)
        strength = _weak_url(name, value) if name.endswith("_url") else _weak(value)
        if not value or default or strength:
            weak.append(name)
    database_url = _plain(getattr(settings, "database_url", ""))
    if "database_url" not in names and _weak_url("database_url", database_url):
        weak.append("database_url")
    return weak


def _weak_url(name: str, url: str) -> bool:
    parts = urlsplit(url)
    if name.endswith("rabbitmq_url"):  # no login is guest/guest
        return (parts.username or "guest") == "guest" or _weak(parts.password or "")
    return parts.password is not None and _weak(parts.password)


def _weak(secret: str | None) -> bool:
    if secret is None:
        return False
    return len(secret) < MIN_SECRET_CHARS or is_development_value(secret)

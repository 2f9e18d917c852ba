"""Production mode: a service refuses to start with a development secret, and says which.

Each service's settings class is built as its composition root builds it (from the
environment); with ``APP_ENV=production`` and one secret left at its default, validation fails
naming that secret's environment variable, and only that one.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.api.settings import ApiSettings, ProjectorSettings
from services.mailer.settings import MailerSettings
from services.payments.settings import PaymentsSettings
from services.relay.app import RelaySettings
from services.verifier.settings import VerifierSettings
from shared.settings import CoreSettings

# Each service's settings class and the secrets it must be given in production.
SERVICE_SECRETS: dict[type[CoreSettings], tuple[str, ...]] = {
    ApiSettings: (
        "RABBITMQ_URL",
        "API_DB_PASSWORD",
        "OPS_DB_PASSWORD",
        "JWT_SECRET",
        "WEBHOOK_SECRET",
        "ADMIN_PASSWORD",
        "RABBITMQ_MANAGEMENT_PASSWORD",
        "MAIL_SEAL_KEY",
    ),
    ProjectorSettings: ("RABBITMQ_URL", "API_DB_PASSWORD", "EVENT_PUBLIC_KEYS"),
    VerifierSettings: ("RABBITMQ_URL", "VERIFIER_DB_PASSWORD", "EVENT_PUBLIC_KEYS"),
    PaymentsSettings: ("RABBITMQ_URL", "PAYMENTS_DB_PASSWORD", "EVENT_PUBLIC_KEYS"),
    MailerSettings: ("RABBITMQ_URL", "MAILER_DB_PASSWORD", "EVENT_PUBLIC_KEYS", "MAIL_SEAL_KEY"),
    RelaySettings: ("RABBITMQ_URL", "RELAY_DB_PASSWORD", "EVENT_SIGNING_KEYS"),
}
ALL_SECRETS = sorted({name for names in SERVICE_SECRETS.values() for name in names})
CASES = [(cls, name) for cls, names in SERVICE_SECRETS.items() for name in names]


def strong(name: str) -> str:
    if name == "RABBITMQ_URL":
        return "amqp://service:k7Qe2-not-a-default@rabbitmq:5672/admissions"
    return f"{name.lower()}-generated-7f3a9c21e8"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: nothing from the shell or the test infrastructure."""
    for name in [*ALL_SECRETS, "APP_ENV", "DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)


def build(cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch, **env: str) -> BaseSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


# As compose gives it to services: the server and database, no credentials (each logs in as
# its own role with <SERVICE>_DB_PASSWORD).
DATABASE_URL = "postgresql://postgres.internal:5432/admissions"


def production_env(cls: type[CoreSettings], *, leave_out: str = "") -> dict[str, str]:
    env = {name: strong(name) for name in SERVICE_SECRETS[cls] if name != leave_out}
    return {"APP_ENV": "production", "DATABASE_URL": DATABASE_URL, **env}


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
def test_a_service_with_its_own_secrets_starts_in_production(
    cls: type[CoreSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = build(cls, monkeypatch, **production_env(cls))
    assert settings.app_env == "production"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cls", "secret"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_a_development_default_is_refused_and_named(
    cls: type[CoreSettings], secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given production mode with every secret set but one, left at its development default
    env = production_env(cls, leave_out=secret)
    # When the service reads its settings, Then it refuses, naming that secret and no other
    with pytest.raises(ValidationError) as refused:
        build(cls, monkeypatch, **env)
    message = str(refused.value)
    assert "APP_ENV=production" in message
    assert secret in message
    others = [name for name in SERVICE_SECRETS[cls] if name != secret]
    assert not [name for name in others if f"{name}," in message or f"{name} " in message]


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@rabbitmq.internal:5672/admissions",
        "amqp://rabbitmq.internal:5672/admissions",  # no login: clients use guest/guest
    ],
)
def test_the_brokers_guest_login_is_refused_on_any_host(
    cls: type[CoreSettings], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**production_env(cls), "RABBITMQ_URL": url}
    with pytest.raises(ValidationError, match="RABBITMQ_URL"):
        build(cls, monkeypatch, **env)


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
def test_an_empty_secret_is_refused(
    cls: type[CoreSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = SERVICE_SECRETS[cls][-1]
    env = {**production_env(cls), secret: ""}
    with pytest.raises(ValidationError, match=secret):
        build(cls, monkeypatch, **env)


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
def test_development_defaults_are_fine_outside_production(
    cls: type[CoreSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build(cls, monkeypatch, APP_ENV="development").app_env == "development"  # type: ignore[attr-defined]
    assert build(cls, monkeypatch, APP_ENV="test").app_env == "test"  # type: ignore[attr-defined]


def test_every_default_secret_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as refused:
        build(ApiSettings, monkeypatch, APP_ENV="production")
    message = str(refused.value)
    assert all(name in message for name in SERVICE_SECRETS[ApiSettings])


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
def test_the_refusal_does_not_print_the_secrets_it_was_given(
    cls: type[CoreSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every secret set but the last, which is left at its default
    env = production_env(cls, leave_out=SERVICE_SECRETS[cls][-1])
    with pytest.raises(ValidationError) as refused:
        build(cls, monkeypatch, **env)
    # Then the error, which ends up in logs, names settings but shows none of the values
    message = str(refused.value)
    assert not [value for name, value in env.items() if name != "APP_ENV" and value in message]


# --- issue 14, item 8: strength, not only "not the default" ---------------------------------


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "weak",
    [
        "hunter2",  # short
        "operator-dev-password",  # another user's development password
        "relay-dev-password",
        "guest",
        "dev-jwt-secret",
        "Postgres",
    ],
)
def test_a_weak_or_known_development_secret_is_refused_in_any_field(
    cls: type[CoreSettings], weak: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = next(name for name in SERVICE_SECRETS[cls] if name != "RABBITMQ_URL")
    env = {**production_env(cls), secret: weak}
    with pytest.raises(ValidationError, match=secret):
        build(cls, monkeypatch, **env)


@pytest.mark.parametrize("cls", SERVICE_SECRETS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("RABBITMQ_URL", "amqp://api:api-dev-password@rabbitmq.internal:5672/admissions"),
        ("RABBITMQ_URL", "amqp://relay:short@rabbitmq.internal:5672/admissions"),
        ("RABBITMQ_URL", "amqp://api@rabbitmq.internal:5672/admissions"),
        ("DATABASE_URL", "postgresql://postgres:postgres@db.internal:5432/admissions"),
        ("DATABASE_URL", "postgresql://api:api-dev-password@db.internal:5432/admissions"),
    ],
)
def test_no_development_password_in_any_url(
    cls: type[CoreSettings], variable: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**production_env(cls), variable: url}
    with pytest.raises(ValidationError, match=variable):
        build(cls, monkeypatch, **env)


@pytest.mark.parametrize(
    "url",
    [
        "amqp://ops:ops-dev-password@rabbitmq.internal:5672/admissions",
        "amqp://guest:guest@rabbitmq.internal:5672/admissions",
        "amqp://ops:short@rabbitmq.internal:5672/admissions",
    ],
)
def test_the_admin_apis_ops_login_is_checked_when_given(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unset, the API has no ops login (a replica serving no dead letters): nothing to refuse
    build(ApiSettings, monkeypatch, **production_env(ApiSettings))
    # Given, a development or short password in it is refused by name
    env = {**production_env(ApiSettings), "OPS_RABBITMQ_URL": url}
    with pytest.raises(ValidationError, match="OPS_RABBITMQ_URL"):
        build(ApiSettings, monkeypatch, **env)

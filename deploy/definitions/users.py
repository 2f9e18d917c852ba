"""The broker's logins: one per service of the manifest, the admin API's ``ops`` and the
``operator`` administrator.

Development passwords are ``<user>-dev-password`` (the committed definitions, ``make run``, the
tests); a production export takes each from ``<USER>_RABBITMQ_PASSWORD`` (``users_from_env``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from shared import manifest
from shared.manifest import ServiceSpec
from shared.settings import MIN_SECRET_CHARS, is_development_value

OPERATOR = "operator"
# The admin API's operations login: dead letters (read, replay, and so purge) and control
# commands, apart from the api's own login, which serves the internet-facing replicas
# (``permissions.ops_permissions``).
OPS = "ops"


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str
    tags: tuple[str, ...] = ()
    # The service this login is, whose queues and ``publishes_to`` its permissions follow;
    # None for ``ops`` and the operator.
    service: ServiceSpec | None = None

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.tags


def dev_password(user: str) -> str:
    return f"{user}-dev-password"


def service_user(spec: ServiceSpec, password: str | None = None) -> BrokerUser:
    """A service's login: its name, its manifest's tags (``broker_tags``)."""
    return BrokerUser(spec.name, password or dev_password(spec.name), spec.broker_tags, spec)


def dev_users(services: Sequence[ServiceSpec] | None = None) -> tuple[BrokerUser, ...]:
    """One user per service of the manifest (read when called, so a test may extend it), the
    admin API's ``ops`` and the operator, with their development passwords."""
    specs = manifest.SERVICES if services is None else services
    users = [service_user(spec) for spec in specs]
    users.append(BrokerUser(OPS, dev_password(OPS)))
    users.append(BrokerUser(OPERATOR, dev_password(OPERATOR), ("administrator",)))
    return tuple(users)


def password_variable(user: str) -> str:
    return f"{user.upper()}_RABBITMQ_PASSWORD"


def users_from_env(environ: Mapping[str, str], names: Iterable[str]) -> tuple[BrokerUser, ...]:
    """Each user's password from ``<USER>_RABBITMQ_PASSWORD`` (all required, and none a
    development password or shorter than ``MIN_SECRET_CHARS``: this is the production
    export, and the operator it makes is an administrator)."""
    wanted = list(names)
    missing = [password_variable(n) for n in wanted if not environ.get(password_variable(n))]
    if missing:
        raise SystemExit(f"--passwords-from-env: set {', '.join(missing)}")
    weak = [
        password_variable(n)
        for n in wanted
        if len(environ[password_variable(n)]) < MIN_SECRET_CHARS
        or is_development_value(environ[password_variable(n)])
    ]
    if weak:
        raise SystemExit(
            f"--passwords-from-env: {', '.join(weak)}: a development password or shorter "
            f"than {MIN_SECRET_CHARS} characters"
        )
    return tuple(
        replace(user, password=environ[password_variable(user.name)])
        for user in dev_users()
        if user.name in set(wanted)
    )

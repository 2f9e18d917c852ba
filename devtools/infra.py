"""Where the tests, the chaos run and the benchmarks find RabbitMQ and Postgres.

In order: containers started by testcontainers when ``INFRA_MODE=containers`` (``make test``
runs the behaviour tests so once); URLs from the environment (``RABBITMQ_URL`` and
``DATABASE_URL``); otherwise the project's own servers, started (or found running) by
``scripts/infra.sh up`` (``devtools/servers``), which records them in ``.run/infra.env``. A
Docker engine that merely answers changes nothing: the local servers stay the default (the
chaos runs restart them, the benchmarks measure them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from devtools.servers import envfile


@dataclass(frozen=True)
class Infra:
    rabbitmq_url: str
    database_url: str
    management_url: str | None = None
    management_user: str = "guest"
    management_password: str = "guest"
    # local | docker: started by scripts/infra.sh, which can also restart them (fault runs);
    # external: someone else's servers (environment URLs, testcontainers), never restarted.
    mode: str = "external"

    @property
    def controllable(self) -> bool:
        return self.mode in ("local", "docker")


def from_environment(environ: Mapping[str, str]) -> Infra | None:
    """The servers the environment names (both URLs set), or None. They count as ours (may be
    restarted) only when they are the ones ``scripts/infra.sh up`` recorded."""
    if not (environ.get("RABBITMQ_URL") and environ.get("DATABASE_URL")):
        return None
    recorded = envfile.read()
    ours = all(environ[k] == recorded.get(k) for k in ("RABBITMQ_URL", "DATABASE_URL"))
    return _infra_from(environ, recorded.get("INFRA_MODE", "external") if ours else "external")


def _infra_from(env: Mapping[str, str], mode: str) -> Infra:
    """The servers named by ``env`` (the variables ``scripts/infra.sh`` writes)."""
    return Infra(
        env["RABBITMQ_URL"],
        env["DATABASE_URL"],
        env.get("RABBITMQ_MANAGEMENT_URL"),
        env.get("RABBITMQ_MANAGEMENT_USER", "guest"),
        env.get("RABBITMQ_MANAGEMENT_PASSWORD", "guest"),
        mode=mode,
    )


@contextmanager
def infrastructure() -> Iterator[Infra]:
    given = from_environment(os.environ)
    if os.environ.get("INFRA_MODE") == "containers":
        yield from _containers(os.environ)
    elif given is not None:
        yield given
    else:
        subprocess.run(
            [sys.executable, "-m", "devtools.servers", "up"],
            cwd=envfile.ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        env = envfile.read()
        yield _infra_from(env, env.get("INFRA_MODE", "local"))


def _containers(environ: Mapping[str, str]) -> Iterator[Infra]:
    """Throw-away RabbitMQ and Postgres containers: the official images, or the local
    stand-ins that ``RABBITMQ_IMAGE`` and ``POSTGRES_IMAGE`` name (deploy/local-images)."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer

    rabbitmq = RabbitMqContainer(environ.get("RABBITMQ_IMAGE", "rabbitmq:3-management"))
    with (
        rabbitmq.with_exposed_ports(15672) as rabbit,  # the management API, not only AMQP
        PostgresContainer(environ.get("POSTGRES_IMAGE", "postgres:15"), driver=None) as postgres,
    ):
        host = rabbit.get_container_host_ip()
        amqp_port = rabbit.get_exposed_port(5672)
        yield Infra(
            f"amqp://guest:guest@{host}:{amqp_port}/",
            postgres.get_connection_url(),
            f"http://{host}:{rabbit.get_exposed_port(15672)}/",
        )

"""Where the tests find RabbitMQ and Postgres.

In order: URLs from the environment (``RABBITMQ_URL`` and ``DATABASE_URL``); containers
started by testcontainers when a Docker engine answers; otherwise the project's own servers,
started (or found running) by ``scripts/infra.sh up``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Infra:
    rabbitmq_url: str
    database_url: str
    management_url: str | None = None
    management_user: str = "guest"
    management_password: str = "guest"


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ")
        key, _, value = line.partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return values


@contextmanager
def infrastructure() -> Iterator[Infra]:
    if os.environ.get("RABBITMQ_URL") and os.environ.get("DATABASE_URL"):
        yield Infra(
            os.environ["RABBITMQ_URL"],
            os.environ["DATABASE_URL"],
            os.environ.get("RABBITMQ_MANAGEMENT_URL"),
        )
    elif _docker_answers():
        yield from _containers()
    else:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "infra.sh"), "up"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
        env = _read_env_file(ROOT / ".run" / "infra.env")
        yield Infra(
            env["RABBITMQ_URL"],
            env["DATABASE_URL"],
            env.get("RABBITMQ_MANAGEMENT_URL"),
            env.get("RABBITMQ_MANAGEMENT_USER", "guest"),
            env.get("RABBITMQ_MANAGEMENT_PASSWORD", "guest"),
        )


def _containers() -> Iterator[Infra]:
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with (
        RabbitMqContainer("rabbitmq:3-management") as rabbit,
        PostgresContainer("postgres:15", driver=None) as postgres,
    ):
        host = rabbit.get_container_host_ip()
        amqp_port = rabbit.get_exposed_port(5672)
        yield Infra(
            f"amqp://guest:guest@{host}:{amqp_port}/",
            postgres.get_connection_url(),
            f"http://{host}:{rabbit.get_exposed_port(15672)}/",
        )

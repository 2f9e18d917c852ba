"""Every service of the system, described once, as data.

A service is a database role with a schema of the same name, a broker login of the same name,
and the processes that run as them. What the rest of the code needs to know about the set of
services is derived from ``SERVICES``: the settings' database passwords, the migrations
``make migrate`` applies, the relay's sources, the operators' schemas, the broker users of the
definitions and their tags, the processes ``make run`` supervises (with their metrics ports),
the chaos run's targets and the benchmark's outboxes. Adding a service is one entry here (and
its container in ``deploy/``, which the deploy tests check against this list).

A service's queues are not restated: they are the queues of ``shared.system_topology`` whose
``service`` is its name (``ServiceSpec.queues``).

Nothing here opens anything; the modules and packages are named, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import QueueSpec


@dataclass(frozen=True)
class ServiceProcess:
    """One process a service runs: ``python -m <module>``."""

    name: str  # the supervisor's name for it, its log file, the chaos run's kill target
    module: str
    # The Prometheus /metrics port of a local run; None: it serves /metrics itself (the HTTP
    # API on its own port).
    metrics_port: int | None = None
    # It consumes queues (and so yields the CPU to those that answer clients on a busy machine).
    consumes_queues: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    processes: tuple[ServiceProcess, ...]
    # The package holding its own ``NNNN_name.sql`` files (every schema also gets the shared
    # ones: inbox, outbox, queue controls); None: only the shared ones.
    migrations: str | None = None
    # It writes events to its outbox, which the relay publishes.
    has_outbox: bool = False
    # Exchanges it publishes to besides the retry and dead-letter exchanges every consumer
    # uses (field names of ``shared.topology.Exchanges``).
    publishes_to: tuple[str, ...] = ()
    # RabbitMQ user tags of its broker login (``management``: reads queue statistics).
    broker_tags: tuple[str, ...] = ()

    @property
    def db_role(self) -> str:
        return self.name

    @property
    def schema(self) -> str:
        """Its role's own schema (search_path ``"$user"``)."""
        return self.name

    @property
    def db_password_setting(self) -> str:
        """The settings field (and, upper-cased, the environment variable) of its role's
        password."""
        return f"{self.name}_db_password"

    @property
    def queues(self) -> tuple[QueueSpec, ...]:
        return SYSTEM_TOPOLOGY.for_service(self.name).queues

    @property
    def migrate_argument(self) -> str:
        """``SERVICE[:PACKAGE]``, as ``python -m shared.db.migrate`` takes it."""
        return f"{self.name}:{self.migrations}" if self.migrations else self.name


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "api",
        (
            ServiceProcess("api", "services.api"),
            ServiceProcess("projector", "services.api.projector", 9101, consumes_queues=True),
        ),
        migrations="services.api.migrations",
        has_outbox=True,
        broker_tags=("management",),
    ),
    ServiceSpec(
        "relay",
        (ServiceProcess("relay", "services.relay", 9102),),
        publishes_to=("events",),
    ),
    ServiceSpec(
        "verifier",
        (ServiceProcess("verifier", "services.verifier", 9103, consumes_queues=True),),
        migrations="services.verifier.migrations",
        has_outbox=True,
    ),
    ServiceSpec(
        "payments",
        (ServiceProcess("payments", "services.payments", 9104, consumes_queues=True),),
        migrations="services.payments.migrations",
        has_outbox=True,
    ),
    ServiceSpec(
        "mailer",
        (ServiceProcess("mailer", "services.mailer", 9105, consumes_queues=True),),
        migrations="services.mailer.migrations",
        has_outbox=True,
    ),
)


# Each function below reads the manifest when called (``services`` None), so that a test can
# put one more service in it and see everything derived from it follow.


def _or_manifest(services: Sequence[ServiceSpec] | None) -> Sequence[ServiceSpec]:
    return SERVICES if services is None else services


def service_names(services: Sequence[ServiceSpec] | None = None) -> tuple[str, ...]:
    return tuple(service.name for service in _or_manifest(services))


def outbox_sources(services: Sequence[ServiceSpec] | None = None) -> list[str]:
    """The schemas whose outbox the relay publishes."""
    return [service.schema for service in _or_manifest(services) if service.has_outbox]


def migrate_arguments(services: Sequence[ServiceSpec] | None = None) -> list[str]:
    return [service.migrate_argument for service in _or_manifest(services)]


def processes(services: Sequence[ServiceSpec] | None = None) -> tuple[ServiceProcess, ...]:
    return tuple(process for service in _or_manifest(services) for process in service.processes)


def process_logins(services: Sequence[ServiceSpec] | None = None) -> dict[str, str]:
    """Each process's broker login (and database role): its service's."""
    return {
        process.name: service.name
        for service in _or_manifest(services)
        for process in service.processes
    }


def metrics_ports(services: Sequence[ServiceSpec] | None = None) -> dict[str, int]:
    """The /metrics port of every process that does not serve it on a port of its own."""
    return {
        process.name: process.metrics_port
        for process in processes(services)
        if process.metrics_port is not None
    }

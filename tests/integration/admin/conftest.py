"""Operations against the real RabbitMQ and Postgres: throw-away schemas, a throw-away
read-only operators' role, and a namespaced topology so runs never meet each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import MessageContext
from shared.db.migrations import provision_ops_role
from shared.db.transactions import PostgresTransaction
from shared.events.catalog import AnnouncementPublished
from shared.events.envelope import Envelope, new_envelope
from shared.settings import CoreSettings
from shared.topology import Exchanges, QueueSpec, Topology
from shared.worker import run_worker
from tests.support.amqp import AmqpInspector
from tests.support.database import role_password
from tests.support.events import signed
from tests.support.infra import Infra


def ops_password(role: str) -> str:
    return f"pw-{role}"


@pytest.fixture
def work_topology(namespace: str, amqp: AmqpInspector) -> Topology:
    """One work queue owned by the service ``namespace`` (its schema), tracked for cleanup."""
    spec = QueueSpec(
        f"{namespace}.work",
        namespace,
        (f"{namespace}.unused",),
        max_attempts=2,
        retry_delays=(1.0,),
        prefetch=4,
    )
    return amqp.track(Topology(Exchanges.namespaced(namespace), (spec,)))


@pytest.fixture
async def ops_role(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A read-only operators' role over the ``schema`` fixture's tables, dropped afterwards."""
    role = f"{namespace}_ops"
    yield role
    async with await psycopg.AsyncConnection.connect(infra.database_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        await admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


async def grant_ops(infra: Infra, role: str, schemas: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(infra.database_url, autocommit=True) as admin:
        await provision_ops_role(admin, role, ops_password(role), schemas)


class WorkerSettings(CoreSettings):
    """Logs in as a throw-away role, whatever its name."""

    def db_password(self, service: str) -> str:
        return role_password(service)


@dataclass
class RunningWorker:
    """``run_worker`` in the background, as a service process runs it."""

    infra: Infra
    schema: str
    topology: Topology
    handled: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def handle(self, ctx: MessageContext[PostgresTransaction]) -> None:
        self.handled.append(str(ctx.envelope.message_id))

    async def start(self) -> None:
        self._stop = asyncio.Event()
        settings = WorkerSettings(
            rabbitmq_url=self.infra.rabbitmq_url, database_url=self.infra.database_url
        )
        self._task = asyncio.ensure_future(
            run_worker(
                service=self.schema,
                settings=settings,
                handlers={self.topology.queues[0].name: self.handle},
                stop=self._stop,
                topology=self.topology,
            )
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=30)
            self._task = None


@pytest.fixture
async def worker(
    infra: Infra, schema: str, work_topology: Topology
) -> AsyncIterator[RunningWorker]:
    running = RunningWorker(infra, schema, work_topology)
    yield running
    await running.stop()


def announcement(index: int = 0) -> Envelope:
    return new_envelope(
        AnnouncementPublished(announcement_id=f"a{index}", subject="s", body="b"),
        correlation_id=f"corr-{index}",
    )


async def publish_to_queue(rabbit: RabbitBroker, topology: Topology, envelope: Envelope) -> None:
    """Straight into the work queue (the retry exchange is bound to it by its name)."""
    queue = topology.queues[0].name
    await rabbit.publish(topology.exchanges.retry, queue, signed(envelope))


async def fetch(pool: AsyncConnectionPool, query: str, *params: object) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        return await (await conn.execute(query, params)).fetchall()


Condition = Callable[[], Awaitable[bool]]

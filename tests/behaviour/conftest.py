"""One harness, two brokers: the behaviour tests of the consumer runtime, of pausing and
resuming, and of the dead-letter viewer run on the in-memory double (fast, no servers) and on
the real RabbitMQ + Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import sql

from shared.broker.base import Broker, BrokerMessage, HeaderValue
from shared.broker.memory import InMemoryBroker
from shared.consumer.memory import InMemoryTransactions
from shared.control import MemoryPauseStore, PauseStore, PostgresPauseStore
from shared.db.transactions import PostgresTransactions
from shared.topology import Exchanges, QueueSpec, Topology
from tests.support.waiting import eventually


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    message_id: str | None
    headers: dict[str, HeaderValue]


class Harness:
    kind: str
    broker: Broker
    transactions: Any
    exchanges: Exchanges
    time_scale: float

    def queue_spec(self, name: str, **policy: Any) -> QueueSpec:
        return QueueSpec(name=name, service="tests", bindings=(name,), **policy)

    async def declare(self, *specs: QueueSpec, exchanges: Exchanges | None = None) -> Topology:
        topology = Topology(exchanges or self.exchanges, specs)
        await self.broker.declare(topology)
        return topology

    async def send(self, routing_key: str, message: BrokerMessage) -> None:
        await self.broker.publish(self.exchanges.events, routing_key, message)

    def pause_store(self) -> PauseStore:
        """Where the workers keep which queues are paused."""
        raise NotImplementedError

    async def depth(self, queue: str) -> int:
        """Messages ready in ``queue``."""
        raise NotImplementedError

    async def holds(self, queue: str, count: int) -> None:
        """``queue`` holds ``count`` messages, once the broker has put back what a finished
        fetch left unacknowledged (a quorum queue does it a moment after the channel closed)."""

        async def depth_is() -> bool:
            return await self.depth(queue) == count

        await eventually(depth_is, timeout=10, what=f"{queue} to hold {count} messages")

    async def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        raise NotImplementedError

    async def effects(self) -> int:
        """Events committed by handlers (the effect the tests count)."""
        raise NotImplementedError


class MemoryHarness(Harness):
    kind = "memory"

    def __init__(self, exchanges: Exchanges) -> None:
        self.time_scale = 0.05
        self.broker = InMemoryBroker(time_scale=self.time_scale)
        self.transactions = InMemoryTransactions()
        self.exchanges = exchanges

    async def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        memory = self.broker
        assert isinstance(memory, InMemoryBroker)
        await eventually(lambda: len(memory.messages(f"{queue}.dlq")) >= count, what="dead letters")
        return [
            DeadLetter(m.body, m.message_id, dict(m.headers))
            for m in memory.messages(f"{queue}.dlq")
        ]

    async def effects(self) -> int:
        return len(self.transactions.outbox)

    def pause_store(self) -> PauseStore:
        return MemoryPauseStore()

    async def depth(self, queue: str) -> int:
        memory = self.broker
        assert isinstance(memory, InMemoryBroker)
        return len(memory.messages(queue))


class RabbitHarness(Harness):
    kind = "rabbitmq"

    def __init__(self, broker: Broker, exchanges: Exchanges, pool: Any, schema: str, amqp: Any):
        self.time_scale = 1.0
        self.broker = broker
        self.transactions = PostgresTransactions(pool, schema)
        self.exchanges = exchanges
        self._pool = pool
        self._schema = schema
        self._amqp = amqp

    async def declare(self, *specs: QueueSpec, exchanges: Exchanges | None = None) -> Topology:
        return self._amqp.track(await super().declare(*specs, exchanges=exchanges))

    async def dead_letters(self, queue: str, count: int) -> list[DeadLetter]:
        taken = await self._amqp.take(f"{queue}.dlq", count)
        return [DeadLetter(m.body, m.message_id, dict(m.headers)) for m in taken]

    async def effects(self) -> int:
        async with self._pool.connection() as conn:
            query = sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(self._schema, "outbox")
            )
            row = await (await conn.execute(query)).fetchone()
            return int(row[0])

    def pause_store(self) -> PauseStore:
        return PostgresPauseStore(self._pool, self._schema)

    async def depth(self, queue: str) -> int:
        return int(await self._amqp.depth(queue))


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest, exchanges: Exchanges) -> Harness:
    # Synchronous on purpose: it pulls the async fixtures of the real servers only when needed.
    if request.param == "memory":
        return MemoryHarness(exchanges)
    return RabbitHarness(
        request.getfixturevalue("rabbit"),
        exchanges,
        request.getfixturevalue("pool"),
        request.getfixturevalue("schema"),
        request.getfixturevalue("amqp"),
    )

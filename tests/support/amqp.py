"""Looking into RabbitMQ from a test: read what sits in a queue, clean up afterwards."""

from __future__ import annotations

import asyncio
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.topology import ExchangeDeclaration, QueueDeclaration, Topology, declarations


class AmqpInspector:
    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self._tracked: list[Topology] = []

    @classmethod
    async def connect(cls, url: str) -> AmqpInspector:
        return cls(await aio_pika.connect_robust(url))

    async def take(
        self, queue: str, count: int, timeout: float = 20.0
    ) -> list[AbstractIncomingMessage]:
        """Remove and return ``count`` messages from ``queue``, waiting for them to arrive."""
        taken: list[AbstractIncomingMessage] = []
        deadline = time.monotonic() + timeout
        async with self.connection.channel() as channel:
            target = await channel.get_queue(queue, ensure=False)
            while len(taken) < count and time.monotonic() < deadline:
                message = await target.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    taken.append(message)
        return taken

    async def depth(self, queue: str) -> int:
        async with self.connection.channel() as channel:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

    def track(self, topology: Topology) -> Topology:
        """Remember a test's topology so that ``delete_tracked`` removes it afterwards."""
        self._tracked.append(topology)
        return topology

    async def delete_tracked(self) -> None:
        for topology in self._tracked:
            for item in declarations(topology):
                async with self.connection.channel() as channel:
                    if isinstance(item, QueueDeclaration):
                        await channel.queue_delete(item.name)
                    elif isinstance(item, ExchangeDeclaration):
                        await channel.exchange_delete(item.name)
        self._tracked.clear()

    async def close(self) -> None:
        await self.connection.close()

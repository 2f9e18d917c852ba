"""Commands to the running processes (pause / resume): the consumer runtime's other entry.

    fanout exchange --> a queue of this process's own --> handler(message) --> ack

A command is no event: nothing to claim, retry or dead-letter. It is handled once, one at a
time and in order, and acknowledged whatever the handler did: a command the handler could
not carry out is logged and dropped, and the operator, who sees the state unchanged, sends it
again. The private queue goes with the process, so nothing would be gained by keeping it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from shared.broker.base import Broker, BrokerMessage, Delivery, Subscription

log = structlog.get_logger("consumer.commands")

CommandHandler = Callable[[BrokerMessage], Awaitable[None]]


class CommandListener:
    def __init__(self, broker: Broker, exchange: str, queue: str, handler: CommandHandler) -> None:
        self.broker = broker
        self.exchange = exchange
        self.queue = queue
        self.handler = handler
        self._subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subscription = await self.broker.listen(self.exchange, self.queue, self._on_delivery)

    async def close(self, timeout: float = 30.0) -> None:
        """Hear no more commands; the one in hand finishes and is acknowledged before the
        channel closes (an acknowledgement on a closed channel would cost the connection)."""
        if self._subscription is None:
            return
        await self._subscription.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        await self._subscription.close()
        self._subscription = None

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self.handler(delivery.message)
        except Exception as error:
            log.error("command failed, dropped", queue=self.queue, error=repr(error))
        finally:
            try:
                await delivery.ack()
            except Exception as error:  # the channel is gone, and the private queue with it
                log.warning("could not acknowledge a command", error=repr(error))
            if task is not None:
                self._in_flight.discard(task)

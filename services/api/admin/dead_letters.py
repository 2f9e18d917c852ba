"""Reading and replaying ``<queue>.dlq`` over AMQP, and sending control commands.

Reading never removes a message: each operation works on a channel of its own, takes messages
with ``basic.get`` *without* acknowledging them, and closes the channel at the end, which puts
every message it did not acknowledge back into the DLQ. An operation reads at most as many
messages as the DLQ held when it began (and at most ``limit``), so a replayed message that
fails again and returns to the DLQ meanwhile is never read, or replayed, twice in one go.

A replay publishes each selected message's copy with publisher confirms and acknowledges the
original only after the broker confirmed the copy: a crash in between leaves both (the
consumer's idempotency claim makes the second one a no-op), never neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from services.api.admin.fingerprints import DeadLetter
from services.api.admin.replay import Selector, pacing_delay, replay_headers
from shared.control import CONTENT_TYPE as CONTROL_CONTENT_TYPE
from shared.control import ControlCommand
from shared.topology import Exchanges, dead_letter_queue_name


class MissingQueue(Exception):
    """The broker has no such queue (yet): nothing to read."""


class NoListener(Exception):
    """A control command reached no queue: no worker of any service is running."""


@dataclass
class ReplayOutcome:
    selected: list[str] = field(default_factory=list)
    scanned: int = 0
    stopped_early: str | None = None


@dataclass(frozen=True)
class Scan:
    letters: list[DeadLetter]
    depth: int  # messages in the DLQ when the scan began

    @property
    def complete(self) -> bool:
        return len(self.letters) >= self.depth


def plain(value: Any) -> Any:
    """Header values as JSON can carry them (x-death is a list of tables)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def as_dead_letter(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    return DeadLetter(
        queue=queue,
        message_id=message.message_id or "",
        headers={key: plain(value) for key, value in (message.headers or {}).items()},
        body=message.body,
        type=message.type,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
    )


class OpsBroker:
    """What the admin API does on the broker as the ``ops`` login: dead letters (scan, find,
    replay) and control commands (pause, resume)."""

    def __init__(self, connection: AbstractRobustConnection, exchanges: Exchanges) -> None:
        self.connection = connection
        self.exchanges = exchanges

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            yield channel
        finally:
            # Everything taken and not acknowledged goes back to its queue now.
            if not channel.is_closed:
                await channel.close()

    async def _open_dlq(self, channel: AbstractChannel, queue: str) -> tuple[AbstractQueue, int]:
        """The DLQ and its depth now; a DLQ not declared yet (no worker ever started) is empty."""
        try:
            dlq = await channel.declare_queue(dead_letter_queue_name(queue), passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            raise MissingQueue(dead_letter_queue_name(queue)) from None
        return dlq, int(dlq.declaration_result.message_count or 0)

    async def scan(self, queue: str, limit: int) -> Scan:
        async with self._channel() as channel:
            dlq, depth = await self._open_dlq(channel, queue)
            letters = []
            for _ in range(min(depth, limit)):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.append(as_dead_letter(queue, message))
            return Scan(letters, depth)

    async def find(self, queue: str, message_id: str, limit: int) -> DeadLetter | None:
        async with self._channel() as channel:
            dlq, depth = await self._open_dlq(channel, queue)
            for _ in range(min(depth, limit)):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    return None
                if message.message_id == message_id:
                    return as_dead_letter(queue, message)
        return None

    async def replay(
        self,
        queue: str,
        selector: Selector,
        *,
        dry_run: bool,
        rate_per_second: float,
        limit: int,
        replayed_by: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> ReplayOutcome:
        outcome = ReplayOutcome()
        async with self._channel() as channel:
            dlq, depth = await self._open_dlq(channel, queue)
            retry = await channel.get_exchange(self.exchanges.retry, ensure=False)
            started = time.monotonic()
            for _ in range(min(depth, limit)):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                outcome.scanned += 1
                if not selector.matches(as_dead_letter(queue, message)):
                    continue  # stays unacknowledged: back to the DLQ when the channel closes
                if dry_run:
                    outcome.selected.append(message.message_id or "")
                    continue
                await asyncio.sleep(
                    pacing_delay(len(outcome.selected), rate_per_second, time.monotonic() - started)
                )
                copy = aio_pika.Message(
                    body=message.body,
                    message_id=message.message_id,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    type=message.type,
                    correlation_id=message.correlation_id,
                    timestamp=message.timestamp,
                    headers=replay_headers(message.headers or {}, replayed_by, clock()),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                try:
                    await retry.publish(copy, routing_key=queue, mandatory=True, timeout=10)
                except (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError) as error:
                    outcome.stopped_early = f"publishing a copy failed: {error!r}"
                    break
                await message.ack()
                outcome.selected.append(message.message_id or "")
        return outcome

    async def send_control_command(self, command: ControlCommand) -> None:
        """Pause or resume: publish to the control exchange and wait for the broker's confirm."""
        async with self._channel() as channel:
            exchange = await channel.get_exchange(self.exchanges.control, ensure=False)
            message = aio_pika.Message(
                body=command.encode(),
                message_id=command.message_id,
                content_type=CONTROL_CONTENT_TYPE,
                timestamp=command.at,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            try:
                await exchange.publish(message, routing_key="", mandatory=True, timeout=10)
            except aio_pika.exceptions.PublishError as error:
                raise NoListener("no worker is listening for control commands") from error

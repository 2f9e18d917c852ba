"""Reading and replaying ``<queue>.dlq`` through the broker port's ``fetch`` (``basic.get``).

Reading never removes a message: each operation is one fetch, which takes messages *without*
acknowledging them and puts back, when it ends, every message it did not acknowledge. An
operation reads at most as many messages as the DLQ held when it began (and at most
``limit``), so a replayed message that fails again and returns to the DLQ meanwhile is never
read, or replayed, twice in one go.

``send_back`` is the one place a dead letter is acknowledged: after the broker confirmed its
copy in the work queue, so a crash in between leaves both (the consumer's idempotency claim
makes the second one a no-op), never neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from services.api.admin.fingerprints import DeadLetter
from services.api.admin.replay import Selector, pacing_delay, replay_headers
from shared.broker.base import Broker, BrokerMessage, Delivery
from shared.errors import PublishFailed
from shared.topology import Exchanges, dead_letter_queue_name


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


def as_dead_letter(queue: str, message: BrokerMessage) -> DeadLetter:
    return DeadLetter(
        queue=queue,
        message_id=message.message_id or "",
        headers=dict(message.headers),
        body=message.body,
        type=message.type,
        content_type=message.content_type or None,
        correlation_id=message.correlation_id,
    )


class DeadLetterQueues:
    """The dead-letter queues of the work queues, on the broker as the ``ops`` login: scan,
    find, replay. ``MissingQueue`` from any of them: the DLQ is not declared yet (no worker
    ever started), so there is nothing to read."""

    def __init__(self, broker: Broker, exchanges: Exchanges) -> None:
        self.broker = broker
        self.exchanges = exchanges

    async def scan(self, queue: str, limit: int) -> Scan:
        async with self.broker.fetch(dead_letter_queue_name(queue)) as dlq:
            letters = []
            for _ in range(min(dlq.depth, limit)):
                delivery = await dlq.get()
                if delivery is None:
                    break
                letters.append(as_dead_letter(queue, delivery.message))
            return Scan(letters, dlq.depth)

    async def find(self, queue: str, message_id: str, limit: int) -> DeadLetter | None:
        async with self.broker.fetch(dead_letter_queue_name(queue)) as dlq:
            for _ in range(min(dlq.depth, limit)):
                delivery = await dlq.get()
                if delivery is None:
                    return None
                if delivery.message.message_id == message_id:
                    return as_dead_letter(queue, delivery.message)
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
        async with self.broker.fetch(dead_letter_queue_name(queue)) as dlq:
            started = time.monotonic()
            for _ in range(min(dlq.depth, limit)):
                delivery = await dlq.get()
                if delivery is None:
                    break
                outcome.scanned += 1
                message_id = delivery.message.message_id or ""
                if not selector.matches(as_dead_letter(queue, delivery.message)):
                    continue  # not acknowledged: back to the DLQ when the fetch ends
                if dry_run:
                    outcome.selected.append(message_id)
                    continue
                await asyncio.sleep(
                    pacing_delay(len(outcome.selected), rate_per_second, time.monotonic() - started)
                )
                try:
                    await self.send_back(queue, delivery, replayed_by, clock())
                except PublishFailed as error:
                    outcome.stopped_early = f"publishing a copy failed: {error!r}"
                    break
                outcome.selected.append(message_id)
        return outcome

    async def send_back(
        self, queue: str, delivery: Delivery, replayed_by: str, now: datetime
    ) -> None:
        """Copy a dead letter into its work queue (through the retry exchange, which routes by
        the work queue's name), then acknowledge the original once the copy is confirmed."""
        original = delivery.message
        copy = replace(original, headers=replay_headers(original.headers, replayed_by, now))
        await self.broker.publish(self.exchanges.retry, queue, copy)
        await delivery.ack()

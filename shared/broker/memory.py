"""An in-memory broker with RabbitMQ's semantics where the core relies on them.

For fast unit tests: topic/direct/fanout routing, mandatory publishing, prefetch, acks,
queue-level TTL that dead-letters (the retry tiers), and argument checks on redeclaration;
private auto-delete queues (``listen``) and ``basic.get`` that puts back what it did not
acknowledge (``fetch``). ``time_scale`` shrinks TTLs so a 2 s retry tier takes 2 s x time_scale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from shared.broker.base import BrokerMessage, DeliveryHandler
from shared.errors import MissingQueue, TopologyMismatch, Unroutable
from shared.topology import (
    Arguments,
    BindingDeclaration,
    ExchangeDeclaration,
    QueueDeclaration,
    Topology,
    declarations,
    retired_bindings,
)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: '*' is one word, '#' is zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] in ("*", k[0])) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


@dataclass
class _Queue:
    name: str
    arguments: Arguments
    messages: deque[tuple[BrokerMessage, bool]] = field(default_factory=deque)
    consumers: list[MemorySubscription] = field(default_factory=list)
    auto_delete: bool = False


@dataclass
class _Exchange:
    kind: str
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (routing key, queue)

    def route(self, routing_key: str) -> list[str]:
        if self.kind == "fanout":
            return [queue for _, queue in self.bindings]
        if self.kind == "topic":
            return [q for key, q in self.bindings if topic_matches(key, routing_key)]
        return [queue for key, queue in self.bindings if key == routing_key]


class MemoryDelivery:
    def __init__(self, subscription: MemorySubscription, message: BrokerMessage, redelivered: bool):
        self._subscription = subscription
        self.message = message
        self.redelivered = redelivered
        self._settled = False

    async def ack(self) -> None:
        self._settle()

    async def requeue(self) -> None:
        self._settle()
        self._subscription.queue.messages.appendleft((self.message, True))

    def _settle(self) -> None:
        if self._settled:
            raise RuntimeError("delivery already acknowledged")
        self._settled = True
        self._subscription.in_hand.discard(self)
        self._subscription.broker.dispatch(self._subscription.queue)


class MemorySubscription:
    def __init__(
        self, broker: InMemoryBroker, queue: _Queue, prefetch: int, handler: DeliveryHandler
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.prefetch = prefetch
        self.handler = handler
        self.in_hand: set[MemoryDelivery] = set()
        self.active = True

    async def cancel(self) -> None:
        self.active = False
        self.queue.consumers.remove(self)
        if self.queue.auto_delete and not self.queue.consumers:
            self.broker.delete_queue(self.queue.name)

    async def close(self) -> None:
        """Like a channel closing: deliveries not yet acked go back to the queue."""
        if self.active:
            await self.cancel()
        for delivery in list(self.in_hand):
            delivery._settled = True
            self.queue.messages.appendleft((delivery.message, True))
        self.in_hand.clear()
        self.broker.dispatch(self.queue)


class MemoryFetched:
    """A message taken by ``basic.get``: acknowledged, requeued, or put back when the fetch
    ends."""

    def __init__(self, fetch: MemoryFetch, message: BrokerMessage, redelivered: bool) -> None:
        self._fetch = fetch
        self.message = message
        self.redelivered = redelivered

    async def ack(self) -> None:
        self._fetch.settle(self)

    async def requeue(self) -> None:
        self._fetch.settle(self)
        self._fetch.queue.messages.appendleft((self.message, True))


class MemoryFetch:
    def __init__(self, queue: _Queue) -> None:
        self.queue = queue
        self.depth = len(queue.messages)
        self.in_hand: list[MemoryFetched] = []

    async def get(self) -> MemoryFetched | None:
        if not self.queue.messages:
            return None
        message, redelivered = self.queue.messages.popleft()
        fetched = MemoryFetched(self, message, redelivered)
        self.in_hand.append(fetched)
        return fetched

    def settle(self, fetched: MemoryFetched) -> None:
        if fetched not in self.in_hand:
            raise RuntimeError("message already acknowledged")
        self.in_hand.remove(fetched)

    def put_back(self) -> None:
        """Like closing the channel: what was taken and not acknowledged returns, in order."""
        for fetched in reversed(self.in_hand):
            self.queue.messages.appendleft((fetched.message, True))
        self.in_hand.clear()


class InMemoryBroker:
    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    # --- the port -----------------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        for item in declarations(topology):
            if isinstance(item, ExchangeDeclaration):
                self._exchanges.setdefault(item.name, _Exchange(item.kind))
            elif isinstance(item, QueueDeclaration):
                existing = self._queues.get(item.name)
                if existing is None:
                    self._queues[item.name] = _Queue(item.name, dict(item.arguments))
                elif existing.arguments != item.arguments:
                    raise TopologyMismatch(
                        f"queue {item.name!r} already exists with arguments "
                        f"{existing.arguments}, declared {dict(item.arguments)}"
                    )
            elif isinstance(item, BindingDeclaration):
                binding = (item.routing_key, item.queue)
                bindings = self._exchanges[item.exchange].bindings
                if binding not in bindings:
                    bindings.append(binding)
        for retired in retired_bindings(topology):
            with contextlib.suppress(ValueError):
                self._exchanges[retired.exchange].bindings.remove(
                    (retired.routing_key, retired.queue)
                )

    async def publish(self, exchange: str, routing_key: str, message: BrokerMessage) -> None:
        queues = self._exchanges[exchange].route(routing_key)
        if not queues:
            raise Unroutable(f"no queue is bound to {exchange!r} for routing key {routing_key!r}")
        for name in queues:
            self._enqueue(self._queues[name], message)

    async def consume(
        self, queue: str, prefetch: int, handler: DeliveryHandler
    ) -> MemorySubscription:
        target = self._queues[queue]
        subscription = MemorySubscription(self, target, prefetch, handler)
        target.consumers.append(subscription)
        self.dispatch(target)
        return subscription

    async def listen(
        self, exchange: str, queue: str, handler: DeliveryHandler
    ) -> MemorySubscription:
        fanout = self._exchanges.get(exchange)
        if fanout is None or fanout.kind != "fanout":
            raise TopologyMismatch(f"no fanout exchange {exchange!r} to listen to")
        self._queues[queue] = _Queue(queue, {"x-queue-type": "classic"}, auto_delete=True)
        fanout.bindings.append(("", queue))
        return await self.consume(queue, 1, handler)

    @contextlib.asynccontextmanager
    async def fetch(self, queue: str) -> AsyncIterator[MemoryFetch]:
        target = self._queues.get(queue)
        if target is None:
            raise MissingQueue(queue)
        fetch = MemoryFetch(target)
        try:
            yield fetch
        finally:
            fetch.put_back()
            self.dispatch(target)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def delete_queue(self, name: str) -> None:
        """Like ``queue.delete``: its messages go, and so do its bindings."""
        del self._queues[name]
        for exchange in self._exchanges.values():
            exchange.bindings = [binding for binding in exchange.bindings if binding[1] != name]

    # --- inspection for tests -----------------------------------------------------------

    def messages(self, queue: str) -> list[BrokerMessage]:
        return [message for message, _ in self._queues[queue].messages]

    def queue_names(self) -> list[str]:
        return list(self._queues)

    # --- internals ----------------------------------------------------------------------

    def _enqueue(self, queue: _Queue, message: BrokerMessage, redelivered: bool = False) -> None:
        queue.messages.append((message, redelivered))
        ttl = queue.arguments.get("x-message-ttl")
        if isinstance(ttl, int) and not isinstance(ttl, bool):
            loop = asyncio.get_running_loop()
            loop.call_later(ttl / 1000 * self.time_scale, self._expire, queue, message)
        self.dispatch(queue)

    def _expire(self, queue: _Queue, message: BrokerMessage) -> None:
        for entry in queue.messages:
            if entry[0] is message:
                queue.messages.remove(entry)
                break
        else:
            return  # already consumed
        exchange = str(queue.arguments["x-dead-letter-exchange"])
        routing_key = str(queue.arguments.get("x-dead-letter-routing-key", ""))
        headers = {**message.headers, "x-death-queue": queue.name}
        for name in self._exchanges[exchange].route(routing_key):
            self._enqueue(self._queues[name], replace(message, headers=headers))

    def dispatch(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with room under their prefetch."""
        progress = True
        while queue.messages and progress:
            progress = False
            for subscription in queue.consumers:
                if not queue.messages:
                    break
                if subscription.active and len(subscription.in_hand) < subscription.prefetch:
                    message, redelivered = queue.messages.popleft()
                    delivery = MemoryDelivery(subscription, message, redelivered)
                    subscription.in_hand.add(delivery)
                    task = asyncio.ensure_future(subscription.handler(delivery))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    progress = True

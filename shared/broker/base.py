"""The broker port: what the consumer runtime and the relay need from a message broker.

Two adapters implement it: ``rabbitmq.RabbitBroker`` (aio-pika, the real thing) and
``memory.InMemoryBroker`` (a double for fast unit tests). Behaviour tests run on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from shared.events.envelope import CONTENT_TYPE, Envelope
from shared.topology import Topology

HeaderValue = str | int | bool | float | None
Headers = Mapping[str, HeaderValue]


@dataclass(frozen=True)
class BrokerMessage:
    """A message as the broker carries it: what is published (always persistent, confirmed
    and mandatory), and what a delivery holds."""

    body: bytes
    message_id: str | None
    content_type: str = CONTENT_TYPE
    type: str | None = None
    correlation_id: str | None = None
    timestamp: datetime | None = None
    headers: Headers = field(default_factory=dict)

    @classmethod
    def from_envelope(cls, envelope: Envelope, headers: Headers | None = None) -> BrokerMessage:
        return cls(
            body=envelope.encode(),
            message_id=str(envelope.message_id),
            type=envelope.type,
            correlation_id=envelope.correlation_id,
            timestamp=envelope.occurred_at,
            headers={"x-schema-version": envelope.version, **(headers or {})},
        )

    def with_headers(self, extra: Headers) -> BrokerMessage:
        return replace(self, headers={**self.headers, **extra})


class Delivery(Protocol):
    """A message handed to a consumer; it stays unacknowledged until ``ack``."""

    @property
    def message(self) -> BrokerMessage: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def requeue(self) -> None: ...


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop receiving new deliveries; the ones in hand may still be acked."""

    async def close(self) -> None:
        """Drop the channel: deliveries not yet acked go back to the queue."""


class Broker(Protocol):
    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings; idempotent; ``TopologyMismatch`` if a
        queue exists with other arguments."""

    async def publish(self, exchange: str, routing_key: str, message: BrokerMessage) -> None:
        """Return once the broker confirmed the message. ``Unroutable`` when no queue took
        it, ``PublishFailed`` when the broker refused it or the connection failed."""

    async def consume(
        self, queue: str, prefetch: int, handler: DeliveryHandler
    ) -> Subscription: ...

    async def close(self) -> None: ...

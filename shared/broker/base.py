"""The broker port: everything the system asks of a message broker. Nothing else speaks AMQP
(an import-linter contract forbids aio-pika outside ``shared.broker``).

- ``publish``: confirmed, persistent, mandatory (the relay, the consumer's retries and dead
  letters, replayed dead letters, control commands);
- ``consume``: a work queue's deliveries under a prefetch (the consumer runtime);
- ``listen``: a fanout exchange heard through a queue of the process's own (control commands);
- ``fetch``: messages taken one at a time without removing them unless acknowledged
  (AMQP ``basic.get``: the dead-letter viewer and replay);
- ``declare``: the topology.

Two adapters implement it: ``rabbitmq.RabbitBroker`` (aio-pika, the real thing) and
``memory.InMemoryBroker`` (a double for fast unit tests). Behaviour tests run on both.
Deciding whether a delivery is acknowledged is left to the callers: the consumer runtime
(``shared.consumer``) for what is consumed or heard, and the dead-letter replay for what is
fetched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol, TypeAlias

from shared.events.envelope import CONTENT_TYPE, Envelope
from shared.topology import Topology

# Tables and arrays occur in what the broker itself writes (x-death); what this system
# writes is scalars.
HeaderValue: TypeAlias = (
    str | int | bool | float | Sequence["HeaderValue"] | Mapping[str, "HeaderValue"] | None
)
Headers: TypeAlias = Mapping[str, HeaderValue]


@dataclass(frozen=True)
class BrokerMessage:
    """A message as the broker carries it: what is published (always persistent, confirmed
    and mandatory), and what a delivery holds."""

    body: bytes
    message_id: str | None
    content_type: str = CONTENT_TYPE
    content_encoding: str | None = None
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


class Fetch(Protocol):
    """Messages taken from one queue one at a time (AMQP ``basic.get``), each unacknowledged
    until ``ack``: whatever is not acknowledged when the fetch ends goes back to the queue."""

    @property
    def depth(self) -> int:
        """Messages ready in the queue when the fetch began."""

    async def get(self) -> Delivery | None:
        """The next ready message, or None when there is none."""


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

    async def listen(self, exchange: str, queue: str, handler: DeliveryHandler) -> Subscription:
        """Hear every message of the fanout ``exchange`` (which must exist: else
        ``TopologyMismatch``) through ``queue``, a queue of this process's own (exclusive,
        auto-delete, classic: it goes when the subscription or the connection does), one
        delivery at a time, in order."""

    def fetch(self, queue: str) -> AbstractAsyncContextManager[Fetch]:
        """Take messages from ``queue`` without removing them unless acknowledged (see
        ``Fetch``). ``MissingQueue`` when there is no such queue, ``AccessRefused`` when this
        login may not read it."""

    async def close(self) -> None: ...

"""The broker topology, described once as data.

Every exchange, queue, retry tier, dead-letter queue and binding the system uses is derived
from a ``Topology`` by ``declarations()``. The RabbitMQ adapter declares that list at start-up,
the in-memory double builds itself from it, and operators' ``definitions.json`` is exported
from it, so the three can never disagree.

Retry without head-of-line blocking: a failed message is copied to ``<queue>.retry.<delay>``,
a queue whose *queue-level* TTL dead-letters it back to the work queue (through the ``retry``
exchange, bound by exact queue names, so it returns to that one queue only, not to every
subscriber of the event).

Every exchange a service publishes to is a topic exchange, even where exact names would do
(``retry``, ``dead``): RabbitMQ's topic permissions (a regex on the routing key per user and
exchange) apply only to topic exchanges, and they are what keeps one service from routing a
message into another service's queue (``deploy.definitions``). Queue names contain no ``*``
or ``#``, so an exact binding key matches exactly that routing key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

ArgumentValue = str | int | bool
Arguments = dict[str, ArgumentValue]


class QueueType(StrEnum):
    QUORUM = "quorum"
    CLASSIC = "classic"


@dataclass(frozen=True)
class Exchanges:
    """Exchange names. Tests use ``namespaced`` so that runs never meet each other."""

    events: str = "admissions.events"
    retry: str = "admissions.retry"
    dead: str = "admissions.dead"
    control: str = "admissions.control"

    @classmethod
    def namespaced(cls, prefix: str) -> Exchanges:
        return cls(
            events=f"{prefix}.events",
            retry=f"{prefix}.retry",
            dead=f"{prefix}.dead",
            control=f"{prefix}.control",
        )


DEFAULT_RETRY_DELAYS: tuple[float, ...] = (2.0, 4.0, 8.0)


@dataclass(frozen=True)
class QueueSpec:
    """One work queue and the policy its consumers follow.

    ``retry_delays[i]`` is the wait before attempt ``i + 2``; when ``max_attempts`` is larger
    than ``len(retry_delays) + 1`` the last delay repeats.
    """

    name: str
    service: str
    bindings: tuple[str, ...]
    max_attempts: int = 4
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    prefetch: int = 32
    lane: str | None = None
    sla_seconds: float | None = None
    queue_type: QueueType = QueueType.QUORUM
    # Quorum queues count redeliveries (a consumer that dies mid-message); past this the broker
    # itself dead-letters the message, so a message that crashes its consumer cannot loop forever.
    delivery_limit: int = 20
    # At most this many deliveries in hand are handled in ONE transaction, their handlers one
    # after another (shared.consumer.runtime). Worth it where handlers only touch the database;
    # 1 where a handler waits on the outside world (SMTP, a provider, document checks), whose
    # concurrency comes from running each message apart.
    batch_size: int = 1
    # The most messages the work queue holds. Past it the broker refuses new ones
    # (``x-overflow: reject-publish``): the relay's publish is not confirmed, so the events wait
    # in the outbox (Postgres) and the relay tries again, instead of the broker's memory and
    # disk filling up. Applied as a policy operators see and may change without redeclaring
    # the queue (``deploy.definitions``).
    max_length: int = 100_000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"{self.name}: max_attempts must be at least 1")
        if self.max_attempts > 1 and not self.retry_delays:
            raise ValueError(f"{self.name}: retries need at least one delay")
        if not 1 <= self.batch_size <= self.prefetch:
            raise ValueError(f"{self.name}: batch_size must be between 1 and the prefetch")

    def delay_before_attempt(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...)."""
        index = min(attempt - 2, len(self.retry_delays) - 1)
        return self.retry_delays[index]

    @property
    def retry_tiers(self) -> tuple[float, ...]:
        """The distinct delays this queue can use, in order: one retry queue each."""
        used = [self.delay_before_attempt(n) for n in range(2, self.max_attempts + 1)]
        return tuple(dict.fromkeys(used))


@dataclass(frozen=True)
class Topology:
    exchanges: Exchanges = field(default_factory=Exchanges)
    queues: tuple[QueueSpec, ...] = ()
    # (queue, routing key) bindings on the events exchange that an earlier version declared
    # and this one does not: declaring only adds, so they are removed at start-up, or a broker
    # that ran the earlier version would go on routing those events to the queue.
    retired_bindings: tuple[tuple[str, str], ...] = ()

    def queue(self, name: str) -> QueueSpec:
        for spec in self.queues:
            if spec.name == name:
                return spec
        raise KeyError(f"no queue named {name!r} in the topology")

    def for_service(self, service: str) -> Topology:
        return Topology(self.exchanges, tuple(q for q in self.queues if q.service == service))


# --- names -----------------------------------------------------------------------------------


def format_delay(seconds: float) -> str:
    """2.0 -> '2s', 0.5 -> '500ms', 90 -> '90s': a readable suffix for queue names."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def retry_queue_name(queue: str, delay_seconds: float) -> str:
    return f"{queue}.retry.{format_delay(delay_seconds)}"


def dead_letter_queue_name(queue: str) -> str:
    return f"{queue}.dlq"


# --- declarations ----------------------------------------------------------------------------

ExchangeKind = Literal["topic", "direct", "fanout"]


@dataclass(frozen=True)
class ExchangeDeclaration:
    name: str
    kind: ExchangeKind


@dataclass(frozen=True)
class QueueDeclaration:
    name: str
    arguments: Arguments
    purpose: Literal["work", "retry", "dead-letter"]


@dataclass(frozen=True)
class BindingDeclaration:
    exchange: str
    queue: str
    routing_key: str


Declaration = ExchangeDeclaration | QueueDeclaration | BindingDeclaration


def _durability_arguments(queue_type: QueueType) -> Arguments:
    arguments: Arguments = {"x-queue-type": queue_type.value}
    if queue_type is QueueType.QUORUM:
        # Dead-lettering that survives a broker crash mid-transfer (RabbitMQ >= 3.10);
        # at-least-once requires reject-publish overflow.
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return arguments


def work_queue_arguments(spec: QueueSpec, exchanges: Exchanges) -> Arguments:
    arguments = _durability_arguments(spec.queue_type)
    arguments["x-dead-letter-exchange"] = exchanges.dead
    arguments["x-dead-letter-routing-key"] = spec.name
    if spec.queue_type is QueueType.QUORUM:
        arguments["x-delivery-limit"] = spec.delivery_limit
    return arguments


def retry_queue_arguments(spec: QueueSpec, delay: float, exchanges: Exchanges) -> Arguments:
    arguments = _durability_arguments(spec.queue_type)
    arguments["x-message-ttl"] = round(delay * 1000)
    arguments["x-dead-letter-exchange"] = exchanges.retry
    arguments["x-dead-letter-routing-key"] = spec.name
    return arguments


def retired_bindings(topology: Topology) -> Iterator[BindingDeclaration]:
    """The bindings to remove, if a broker still has them (see ``Topology.retired_bindings``)."""
    for queue, routing_key in topology.retired_bindings:
        yield BindingDeclaration(topology.exchanges.events, queue, routing_key)


def declarations(topology: Topology) -> Iterator[Declaration]:
    """Everything to declare, exchanges first, then each queue with its tiers and bindings."""
    ex = topology.exchanges
    yield ExchangeDeclaration(ex.events, "topic")
    yield ExchangeDeclaration(ex.retry, "topic")
    yield ExchangeDeclaration(ex.dead, "topic")
    yield ExchangeDeclaration(ex.control, "fanout")
    for spec in topology.queues:
        yield QueueDeclaration(spec.name, work_queue_arguments(spec, ex), "work")
        for routing_key in spec.bindings:
            yield BindingDeclaration(ex.events, spec.name, routing_key)
        # The way back from every retry tier.
        yield BindingDeclaration(ex.retry, spec.name, spec.name)
        for delay in spec.retry_tiers:
            name = retry_queue_name(spec.name, delay)
            yield QueueDeclaration(name, retry_queue_arguments(spec, delay, ex), "retry")
            yield BindingDeclaration(ex.retry, name, name)
        dlq = dead_letter_queue_name(spec.name)
        yield QueueDeclaration(dlq, {"x-queue-type": spec.queue_type.value}, "dead-letter")
        yield BindingDeclaration(ex.dead, dlq, spec.name)

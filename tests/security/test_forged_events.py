"""Issue 14, item 1: forged events.

With each service's broker login, every way of putting another service's event into a queue is
tried: publishing it to ``admissions.events``, routing it through ``admissions.retry`` into
another service's work queue or retry tier, and into another service's dead-letter queue
through ``admissions.dead``. The broker refuses each (topic permissions), except what it cannot
tell apart from legitimate work: the relay publishing any type (it publishes for every service)
and the admin API's dead-letter replay into any work queue. Those reach a consumer, which
dead-letters them unless the type's owner signed them (``test_unsigned_*`` below).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
import pytest

from shared.events.catalog import CATALOG, publisher_of
from shared.settings import SERVICES
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import dead_letter_queue_name, retry_queue_name
from tests.support.broker_logins import BrokerLogins, channel_of, may_publish

EX = SYSTEM_TOPOLOGY.exchanges


@dataclass(frozen=True)
class Forgery:
    forger: str
    exchange: str
    routing_key: str
    event_type: str


def forged_message(event_type: str) -> aio_pika.Message:
    message_id = str(uuid.uuid4())
    body = (
        '{"message_id":"%s","type":"%s","version":1,"occurred_at":"2026-01-01T00:00:00Z",'
        '"correlation_id":"forged","payload":{"application_id":"x"}}' % (message_id, event_type)
    )
    return aio_pika.Message(
        body.encode(),
        message_id=message_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def forgeries() -> Iterator[Forgery]:
    """Every route into a queue, with an event type the forger does not own."""
    for forger in SERVICES:
        foreign = [t for t in CATALOG if publisher_of(t) != forger]
        for event_type in foreign:
            yield Forgery(forger, EX.events, event_type, event_type)
        for spec in SYSTEM_TOPOLOGY.queues:
            if spec.service == forger:
                continue
            event_type = next((t for t in spec.bindings if publisher_of(t) != forger), foreign[0])
            keys = [spec.name, *(retry_queue_name(spec.name, d) for d in spec.retry_tiers)]
            for key in keys:
                yield Forgery(forger, EX.retry, key, event_type)
            yield Forgery(forger, EX.dead, spec.name, event_type)


def let_through(forgery: Forgery) -> bool:
    """What the broker cannot refuse: the relay publishes every service's events; the admin
    API replays dead letters into any work queue. Consumers check the signature instead."""
    if forgery.forger == "relay" and forgery.exchange == EX.events:
        return True
    work_queues = {spec.name for spec in SYSTEM_TOPOLOGY.queues}
    return forgery.forger == "api" and (
        forgery.exchange == EX.retry and forgery.routing_key in work_queues
    )


async def queue_depths(logins: BrokerLogins) -> dict[str, int]:
    names = [
        name
        for spec in SYSTEM_TOPOLOGY.queues
        for name in (
            spec.name,
            dead_letter_queue_name(spec.name),
            *(retry_queue_name(spec.name, d) for d in spec.retry_tiers),
        )
    ]
    depths = {}
    async with channel_of(logins, "admin") as channel:
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
    return depths


@pytest.mark.integration
async def test_the_broker_refuses_every_forgery_it_can_tell_apart(
    broker_logins: BrokerLogins,
) -> None:
    tried = refused = 0
    for forgery in forgeries():
        if let_through(forgery):
            continue
        # When a service publishes another service's event by that route
        accepted = await may_publish(
            broker_logins,
            forgery.forger,
            forgery.exchange,
            forgery.routing_key,
            forged_message(forgery.event_type),
        )
        tried += 1
        refused += not accepted
        # Then the broker refuses it
        assert not accepted, forgery
    assert tried == refused > 150
    # And no queue holds anything
    assert set((await queue_depths(broker_logins)).values()) == {0}

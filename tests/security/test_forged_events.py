"""Issue 14, item 1: forged events.

With each service's broker login, every way of putting another service's event into a queue is
tried: publishing it to ``admissions.events``, routing it through ``admissions.retry`` into
another service's work queue or retry tier, and into another service's dead-letter queue
through ``admissions.dead``. The broker refuses each (topic permissions), except what it cannot
tell apart from legitimate work: the relay publishing any type (it publishes for every service)
and the admin API's dead-letter replay (its ``ops`` login) into any work queue. Those reach a
consumer, which dead-letters them unless the type's owner signed them (``test_unsigned_*``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from deploy.definitions.users import OPS
from shared.broker.base import BrokerMessage
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.memory import InMemoryTransactions
from shared.consumer.policy import ERROR_KIND, ERROR_MESSAGE, ERROR_TYPE
from shared.consumer.runtime import Consumer, MessageContext, Observation
from shared.errors import PublishFailed
from shared.events.catalog import CATALOG, PaymentCompleted, ReportRequested, publisher_of
from shared.events.envelope import Envelope, new_envelope
from shared.events.signing import SIGNATURE_HEADER, SIGNED_BY_HEADER, EventSigner
from shared.manifest import service_names
from shared.outbox.relay import Relay
from shared.outbox.writer import write_outbox
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import dead_letter_queue_name, retry_queue_name
from tests.behaviour.conftest import Harness
from tests.support.broker_logins import BrokerLogins, channel_of, may_publish
from tests.support.events import DEVELOPMENT_VERIFIER, sign, signed
from tests.support.waiting import eventually

EX = SYSTEM_TOPOLOGY.exchanges


@dataclass(frozen=True)
class Forgery:
    forger: str
    exchange: str
    routing_key: str
    event_type: str


def forged_message(event_type: str) -> aio_pika.Message:
    message_id = str(uuid.uuid4())
    body = {
        "message_id": message_id,
        "type": event_type,
        "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "correlation_id": "forged",
        "payload": {"application_id": "x"},
    }
    return aio_pika.Message(
        json.dumps(body).encode(),
        message_id=message_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def forgeries() -> Iterator[Forgery]:
    """Every route into a queue, with an event type the forger does not own."""
    for forger in (*service_names(), OPS):
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
    API's ops login replays dead letters into any work queue. Consumers check the signature
    instead."""
    if forgery.forger == "relay" and forgery.exchange == EX.events:
        return True
    work_queues = {spec.name for spec in SYSTEM_TOPOLOGY.queues}
    return forgery.forger == OPS and (
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


# --- what the broker lets through: the consumer checks the signature -------------------------


def payment_completed(application_id: str = "app-1") -> Envelope:
    return new_envelope(
        PaymentCompleted(
            application_id=application_id,
            applicant_email="a@example.org",
            payment_id="pay-1",
            amount_cents=5000,
            currency="EUR",
        )
    )


def forged_copies(envelope: Envelope) -> dict[str, BrokerMessage]:
    """The ways a login without the payments key can dress up a payment.completed."""
    plain = BrokerMessage.from_envelope(envelope)
    by_api = sign(plain, "api")
    another_event = sign(BrokerMessage.from_envelope(payment_completed("app-2")), "payments")
    return {
        "unsigned": plain,
        "signed by another service": by_api,
        "another service's signature claiming to be payments": by_api.with_headers(
            {SIGNED_BY_HEADER: "payments"}
        ),
        "payments' signature of another event": plain.with_headers(
            {key: another_event.headers[key] for key in (SIGNED_BY_HEADER, SIGNATURE_HEADER)}
        ),
    }


class Recorder:
    def __init__(self) -> None:
        self.handled: list[str] = []

    async def __call__(self, ctx: MessageContext[Any]) -> None:
        self.handled.append(ctx.envelope.type)


async def test_events_not_signed_by_their_owner_are_dead_lettered_with_the_reason(
    harness: Harness, namespace: str
) -> None:
    # Given a consumer of payment.completed (a queue bound by its own name)
    spec = harness.queue_spec(f"{namespace}.paid")
    await harness.declare(spec)
    handler = Recorder()
    consumer = Consumer(
        service="tests",
        spec=spec,
        exchanges=harness.exchanges,
        broker=harness.broker,
        transactions=harness.transactions,
        handler=handler,
        authenticity=DEVELOPMENT_VERIFIER,
    )
    await consumer.start()
    try:
        # When every forged copy arrives, then the genuine event
        forged = forged_copies(payment_completed())
        for message in forged.values():
            await harness.send(spec.name, message)
        await harness.send(spec.name, signed(payment_completed("genuine")))
        # Then each forgery is dead-lettered, saying who should have signed it
        dead = await harness.dead_letters(spec.name, len(forged))
        assert [d.headers[ERROR_TYPE] for d in dead] == ["ForgedEvent"] * len(forged)
        assert all(d.headers[ERROR_KIND] == "permanent" for d in dead)
        reasons = sorted(str(d.headers[ERROR_MESSAGE]) for d in dead)
        assert reasons == sorted(
            [
                "payment.completed must be signed by payments, signed by nobody",
                "payment.completed must be signed by payments, signed by api",
                "payment.completed: the signature of payments does not match",
                "payment.completed: the signature of payments does not match",
            ]
        )
        # And only the genuine event reached the handler: the forgeries changed nothing
        await eventually(lambda: consumer.outcomes["processed"] == 1, what="the genuine event")
        assert handler.handled == ["payment.completed"]
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_every_forgery_the_broker_lets_through_is_dead_lettered_by_its_consumer(
    broker_logins: BrokerLogins,
) -> None:
    # Given every work queue consumed by the runtime, each with its owner's login
    brokers = {
        service: await RabbitBroker.connect(broker_logins.url(service), connection_name=service)
        for service in {spec.service for spec in SYSTEM_TOPOLOGY.queues}
    }
    handler = Recorder()
    transactions = InMemoryTransactions()
    seen: list[Observation] = []
    consumers = [
        Consumer(
            service=spec.service,
            spec=spec,
            exchanges=EX,
            broker=brokers[spec.service],
            transactions=transactions,
            handler=handler,
            authenticity=DEVELOPMENT_VERIFIER,
            observers=[seen.append],
        )
        for spec in SYSTEM_TOPOLOGY.queues
    ]
    try:
        for consumer in consumers:
            await consumer.start()
        # When the relay's and the ops logins send every forgery the broker lets through,
        # unsigned and signed by a key of their own claiming to be the owner's
        expected = 0
        for forgery in filter(let_through, forgeries()):
            for message in (
                forged_message(forgery.event_type),
                signed_by_impostor(forged_message(forgery.event_type)),
            ):
                assert await may_publish(
                    broker_logins, forgery.forger, forgery.exchange, forgery.routing_key, message
                ), forgery
                expected += reached_queues(forgery)
        assert expected > 30

        # Then every copy is dead-lettered as a forgery, and no handler ran
        async def dead_lettered() -> bool:
            return sum(c.outcomes["dead-lettered"] for c in consumers) >= expected

        await eventually(dead_lettered, what=f"{expected} forgeries dead-lettered", timeout=30)
        assert sum(c.outcomes["dead-lettered"] for c in consumers) == expected
        assert {o.error_type for o in seen} == {"ForgedEvent"}
        assert handler.handled == [] and transactions.processed == set()
        depths = await queue_depths(broker_logins)
        assert sum(n for name, n in depths.items() if name.endswith(".dlq")) == expected
    finally:
        for consumer in consumers:
            await consumer.stop()
        for broker in brokers.values():
            await broker.close()


def reached_queues(forgery: Forgery) -> int:
    """How many work queues a forgery the broker let through lands in."""
    if forgery.exchange == EX.retry:
        return 1
    return sum(forgery.routing_key in spec.bindings for spec in SYSTEM_TOPOLOGY.queues)


def signed_by_impostor(message: aio_pika.Message) -> aio_pika.Message:
    """Signed by a key of the forger's own, claiming to be the event type's owner."""
    event_type = json.loads(message.body)["type"]
    impostor = EventSigner(publisher_of(event_type), Ed25519PrivateKey.generate())
    message.headers = {**(message.headers or {}), **impostor.headers(message.body)}
    return message


@pytest.mark.integration
async def test_a_type_the_broker_refuses_the_relay_is_parked_and_the_rest_flows(
    broker_logins: BrokerLogins, pool: AsyncConnectionPool, schema: str
) -> None:
    # Given the relay's login, and an outbox where a type the broker does not let it publish
    # (code newer than the definitions the broker loaded) sits between two good rows
    good = [
        new_envelope(
            ReportRequested(report_id=f"report {n}", kind="applications", recipient="ops@b.org")
        )
        for n in range(2)
    ]
    bogus = good[0].model_copy(update={"type": "application.renamed", "message_id": uuid.uuid4()})
    async with pool.connection() as conn, conn.transaction():
        await write_outbox(conn, schema, [good[0], bogus, good[1]])
    broker = await RabbitBroker.connect(broker_logins.url("relay"), connection_name="relay")
    relay = Relay(
        pool=pool,
        broker=broker,
        exchange=EX.events,
        schemas=[schema],
        signers={schema: EventSigner.development("api")},
        listen_conninfo="unused: the test calls drain",
    )
    try:
        # When the relay makes a few passes (the refusal closes its channel each time)
        for _ in range(4):
            with contextlib.suppress(PublishFailed):
                await relay.drain()
    finally:
        await broker.close()
    # Then the good rows are published, and the refused one waits with the broker's reason,
    # on its own back-off, instead of wedging every pass
    async with pool.connection() as conn:
        cursor = await conn.execute(
            sql.SQL("SELECT type, published_at IS NOT NULL, last_error FROM {} ORDER BY id").format(
                sql.Identifier(schema, "outbox")
            )
        )
        rows = await cursor.fetchall()
    assert [(kind, published) for kind, published, _ in rows] == [
        ("report.requested", True),
        ("application.renamed", False),
        ("report.requested", True),
    ]
    assert "refused" in str(rows[1][2])

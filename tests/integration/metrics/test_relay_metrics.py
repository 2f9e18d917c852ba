"""The relay's metrics against the real Postgres: outbox lag, published rows, backlog gauges."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.relay.app import sample_backlog
from shared.broker.memory import InMemoryBroker
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.events.signing import EventSigner
from shared.metrics import metrics_for
from shared.outbox.relay import Relay, RelayOptions
from shared.outbox.writer import write_outbox
from shared.topology import Exchanges, QueueSpec, Topology
from tests.support.waiting import eventually


async def add_events(pool: AsyncConnectionPool, schema: str, count: int) -> None:
    envelopes = [
        new_envelope(
            PaymentFailed(reason="declined", application_id=str(i), applicant_email="a@example.org")
        )
        for i in range(count)
    ]
    async with pool.connection() as conn, conn.transaction():
        await write_outbox(conn, schema, envelopes)


async def age_rows(pool: AsyncConnectionPool, schema: str, seconds: int) -> None:
    """Pretend the rows were written ``seconds`` ago (a relay that was down)."""
    async with pool.connection() as conn:
        await conn.execute(
            sql.SQL("UPDATE {} SET created_at = created_at - make_interval(secs => %s)").format(
                sql.Identifier(schema, "outbox")
            ),
            (seconds,),
        )


async def relay_with_metrics(
    pool: AsyncConnectionPool, schema: str, registry: CollectorRegistry
) -> Relay:
    exchanges = Exchanges.namespaced(schema)
    broker = InMemoryBroker()
    await broker.declare(Topology(exchanges, (QueueSpec("sink", "tests", ("#",)),)))
    return Relay(
        pool=pool,
        broker=broker,
        exchange=exchanges.events,
        schemas=[schema],
        signers={schema: EventSigner.development("api")},
        listen_conninfo="unused: these tests call publish_batch directly",
        options=RelayOptions(batch_size=100),
        metrics=metrics_for(registry),
    )


def sample(registry: CollectorRegistry, name: str, source: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"source": source, **labels}) or 0.0


async def test_publishing_records_each_rows_lag_and_the_published_count(
    pool: AsyncConnectionPool, schema: str
) -> None:
    # Given four rows written 20 s ago
    registry = CollectorRegistry()
    relay = await relay_with_metrics(pool, schema, registry)
    await add_events(pool, schema, 4)
    await age_rows(pool, schema, 20)
    # When the relay publishes them
    assert await relay.publish_batch(schema) == 4
    # Then four were counted, each with a lag of about 20 s
    assert sample(registry, "admissions_relay_published_total", schema) == 4
    assert sample(registry, "admissions_outbox_lag_seconds_count", schema) == 4
    assert sample(registry, "admissions_outbox_lag_seconds_bucket", schema, le="10.0") == 0
    assert sample(registry, "admissions_outbox_lag_seconds_bucket", schema, le="30.0") == 4


async def test_the_backlog_sampler_shows_waiting_rows_and_their_age(
    pool: AsyncConnectionPool, schema: str
) -> None:
    # Given three rows waiting, the oldest written a minute ago
    registry = CollectorRegistry()
    relay = await relay_with_metrics(pool, schema, registry)
    await add_events(pool, schema, 3)
    await age_rows(pool, schema, 60)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_backlog(relay, metrics_for(registry), stop, 0.05))
    try:
        # Then the gauges show them
        await eventually(
            lambda: sample(registry, "admissions_outbox_unpublished", schema) == 3,
            what="three unpublished rows on the gauge",
        )
        oldest = sample(registry, "admissions_outbox_oldest_unpublished_seconds", schema)
        assert 60 <= oldest < 90
        # When the relay publishes them, the gauges fall back to zero
        await relay.publish_batch(schema)
        await eventually(
            lambda: sample(registry, "admissions_outbox_unpublished", schema) == 0,
            what="an empty backlog on the gauge",
        )
        assert sample(registry, "admissions_outbox_oldest_unpublished_seconds", schema) == 0
    finally:
        stop.set()
        await asyncio.wait_for(sampler, timeout=5)

"""The relay against real Postgres and RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.broker.rabbitmq import RabbitBroker
from shared.db.pool import role_conninfo
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.events.signing import EventSigner
from shared.outbox.relay import Relay, RelayOptions
from shared.outbox.writer import write_outbox
from shared.topology import Exchanges, QueueSpec, Topology
from tests.support.amqp import AmqpInspector
from tests.support.infra import Infra
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually


@pytest.fixture
async def sink(
    exchanges: Exchanges, rabbit: RabbitBroker, amqp: AmqpInspector, namespace: str
) -> str:
    """A queue receiving every event published on the test's exchange."""
    spec = QueueSpec(f"{namespace}.sink", "tests", ("#",))
    await rabbit.declare(amqp.track(Topology(exchanges, (spec,))))
    return spec.name


def make_relay(
    pool: AsyncConnectionPool, broker: Any, exchanges: Exchanges, schema: str, infra: Infra
) -> Relay:
    return Relay(
        pool=pool,
        broker=broker,
        exchange=exchanges.events,
        schemas=[schema],
        signers={schema: EventSigner.development("api")},
        listen_conninfo=role_conninfo(infra.database_url, schema, f"pw-{schema}"),
        options=RelayOptions(batch_size=100, poll_interval=0.5, max_backoff=0.5),
    )


async def add_events(pool: AsyncConnectionPool, schema: str, count: int) -> set[str]:
    envelopes = [
        new_envelope(
            PaymentFailed(reason="declined", application_id=str(i), applicant_email="a@example.org")
        )
        for i in range(count)
    ]
    async with pool.connection() as conn, conn.transaction():
        await write_outbox(conn, schema, envelopes)
    return {str(e.message_id) for e in envelopes}


async def unpublished(pool: AsyncConnectionPool, schema: str) -> int:
    async with pool.connection() as conn:
        query = sql.SQL("SELECT count(*) FROM {} WHERE published_at IS NULL").format(
            sql.Identifier(schema, "outbox")
        )
        row = await (await conn.execute(query)).fetchone()
        assert row is not None
        return int(row[0])


async def received_ids(amqp: AmqpInspector, queue: str, count: int) -> list[str]:
    return [str(m.message_id) for m in await amqp.take(queue, count, timeout=30)]


async def run_in_background(relay: Relay) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(relay.run(stop))


async def test_rows_committed_out_of_id_order_are_all_published(
    pool: AsyncConnectionPool,
    schema: str,
    rabbit: RabbitBroker,
    exchanges: Exchanges,
    sink: str,
    amqp: AmqpInspector,
    infra: Infra,
) -> None:
    relay = make_relay(pool, rabbit, exchanges, schema, infra)
    early = new_envelope(
        PaymentFailed(reason="declined", application_id="early", applicant_email="a@example.org")
    )
    late = new_envelope(
        PaymentFailed(reason="declined", application_id="late", applicant_email="a@example.org")
    )
    async with pool.connection() as slow, pool.connection() as fast:
        # Given the row with the lower id is still uncommitted when the higher one commits
        async with slow.transaction():
            await write_outbox(slow, schema, [early])
            async with fast.transaction():
                await write_outbox(fast, schema, [late])
            # When the relay runs in between
            assert await relay.drain() == set()
            assert await received_ids(amqp, sink, 1) == [str(late.message_id)]
        # Then the lower id is published once it commits, not skipped
        await relay.drain()
    assert await received_ids(amqp, sink, 1) == [str(early.message_id)]
    assert await unpublished(pool, schema) == 0


async def test_two_relays_side_by_side_publish_every_row_once(
    pool: AsyncConnectionPool,
    schema: str,
    infra: Infra,
    exchanges: Exchanges,
    sink: str,
    amqp: AmqpInspector,
) -> None:
    expected = await add_events(pool, schema, 3000)
    brokers = [
        await RabbitBroker.connect(infra.rabbitmq_url, connection_name=f"relay-{i}")
        for i in range(2)
    ]
    runs = [await run_in_background(make_relay(pool, b, exchanges, schema, infra)) for b in brokers]

    got = await received_ids(amqp, sink, len(expected))
    assert len(got) == len(expected)
    assert set(got) == expected
    assert await unpublished(pool, schema) == 0
    for stop, task in runs:
        stop.set()
        await task
    for broker in brokers:
        await broker.close()


async def test_rows_wait_while_the_broker_is_unreachable_and_go_when_it_returns(
    pool: AsyncConnectionPool,
    schema: str,
    infra: Infra,
    exchanges: Exchanges,
    sink: str,
    amqp: AmqpInspector,
) -> None:
    amqp_url = urlsplit(infra.rabbitmq_url)
    proxy = TcpProxy(amqp_url.hostname or "127.0.0.1", amqp_url.port or 5672)
    await proxy.start()
    credentials = f"{amqp_url.username}:{amqp_url.password}"
    via_proxy = urlunsplit(
        amqp_url._replace(
            netloc=f"{credentials}@127.0.0.1:{proxy.port}", query="reconnect_interval=0.5"
        )
    )
    broker = await RabbitBroker.connect(
        via_proxy, connection_name="relay-behind-proxy", publish_timeout=2
    )
    stop, task = await run_in_background(make_relay(pool, broker, exchanges, schema, infra))

    # Given the broker cannot be reached
    await proxy.cut()
    expected = await add_events(pool, schema, 50)
    await asyncio.sleep(2)
    assert await unpublished(pool, schema) == 50

    # When it comes back, the same relay (no restart) publishes every row
    await proxy.restore()
    got = await received_ids(amqp, sink, 50)
    assert set(got) == expected
    await eventually(lambda: no_rows_left(pool, schema), timeout=20, what="rows marked")
    stop.set()
    await task
    await broker.close()
    await proxy.cut()


async def no_rows_left(pool: AsyncConnectionPool, schema: str) -> bool:
    return await unpublished(pool, schema) == 0


async def test_an_unroutable_event_stays_unpublished_with_its_error(
    pool: AsyncConnectionPool,
    schema: str,
    rabbit: RabbitBroker,
    exchanges: Exchanges,
    amqp: AmqpInspector,
    infra: Infra,
) -> None:
    # Given an exchange with no queue bound
    await rabbit.declare(amqp.track(Topology(exchanges, ())))
    await add_events(pool, schema, 1)
    relay = make_relay(pool, rabbit, exchanges, schema, infra)

    await relay.drain()

    async with pool.connection() as conn:
        query = sql.SQL("SELECT published_at, attempts, last_error FROM {}").format(
            sql.Identifier(schema, "outbox")
        )
        published_at, attempts, last_error = await (await conn.execute(query)).fetchone()  # type: ignore[misc]
    assert published_at is None
    assert attempts == 1
    assert "no queue is bound" in last_error


async def test_a_commit_wakes_the_relay_before_its_poll(
    pool: AsyncConnectionPool,
    schema: str,
    rabbit: RabbitBroker,
    exchanges: Exchanges,
    sink: str,
    amqp: AmqpInspector,
    infra: Infra,
) -> None:
    relay = make_relay(pool, rabbit, exchanges, schema, infra)
    relay.options = RelayOptions(poll_interval=30)
    stop, task = await run_in_background(relay)
    await asyncio.sleep(0.5)  # listening

    loop = asyncio.get_running_loop()
    started = loop.time()
    expected = await add_events(pool, schema, 1)
    assert set(await received_ids(amqp, sink, 1)) == expected
    assert loop.time() - started < 5  # far below the 30 s poll: the NOTIFY woke it
    stop.set()
    await task


class SourceSpy(Relay):
    """Records which sources each pass read; ``quiet`` is a source that never has rows."""

    QUIET = "quiet_source"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read: list[str] = []

    async def publish_batch(self, schema: str) -> int:
        self.read.append(schema)
        return 0 if schema == self.QUIET else await super().publish_batch(schema)


async def test_a_notification_sends_the_relay_to_the_source_it_names_only(
    pool: AsyncConnectionPool,
    schema: str,
    rabbit: RabbitBroker,
    exchanges: Exchanges,
    sink: str,
    amqp: AmqpInspector,
    infra: Infra,
) -> None:
    # Given a relay of two sources, one of them quiet, that polls only every 30 s
    relay = SourceSpy(
        pool=pool,
        broker=rabbit,
        exchange=exchanges.events,
        schemas=[SourceSpy.QUIET, schema],
        signers={source: EventSigner.development("api") for source in (SourceSpy.QUIET, schema)},
        listen_conninfo=role_conninfo(infra.database_url, schema, f"pw-{schema}"),
        options=RelayOptions(batch_size=100, poll_interval=30, max_backoff=0.5),
    )
    stop, task = await run_in_background(relay)
    await asyncio.sleep(0.5)  # listening; the start-up pass read both
    assert SourceSpy.QUIET in relay.read
    relay.read.clear()

    # When rows commit in the other source, three times
    for _ in range(3):
        expected = await add_events(pool, schema, 1)
        assert set(await received_ids(amqp, sink, 1)) == expected
    stop.set()
    await task

    # Then every pass since read that source alone
    assert relay.read and set(relay.read) == {schema}

"""Issue 14, item 7: a Postgres outage dead-letters nothing.

A consumer whose database is unreachable must not bounce its messages back to the queue: a
quorum queue counts every requeue against ``x-delivery-limit`` and dead-letters the message past
it, though the message was never at fault. The runtime holds the message instead and tries
again until the database answers. Here the network to Postgres is cut (a TCP proxy; the shared
server keeps running) while messages arrive, for far longer than the delivery limit's worth of
requeues; ``OUTAGE_SECONDS=300`` runs the issue's five minutes at the production delivery limit
(20) and back-off.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import Consumer, MessageContext
from shared.db.pool import create_pool, role_conninfo
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.topology import Exchanges, QueueSpec, Topology, dead_letter_queue_name
from tests.support.amqp import AmqpInspector
from tests.support.database import role_password
from tests.support.events import DEVELOPMENT_VERIFIER, signed
from tests.support.infra import Infra
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

LONG = float(os.environ.get("OUTAGE_SECONDS", "0"))
OUTAGE_SECONDS = LONG or 8.0
# The short run squeezes many requeues' worth of outage into seconds: a low delivery limit and
# a short back-off (the long run uses the production values).
DELIVERY_LIMIT = 20 if LONG else 3
BACKOFF = 1.0 if LONG else 0.2
MESSAGES = 40


# 1: each message in its own transaction; 8: batched transactions (issue 12), whose batch is
# held as a whole.
@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.timeout(OUTAGE_SECONDS + 180)
async def test_a_database_outage_under_load_dead_letters_nothing(
    batch_size: int,
    infra: Infra,
    schema: str,
    rabbit: RabbitBroker,
    amqp: AmqpInspector,
    exchanges: Exchanges,
    namespace: str,
) -> None:
    # Given a consumer whose database connections go through a proxy that can be cut
    server = conninfo_to_dict(infra.database_url)
    proxy = TcpProxy(str(server.get("host") or "127.0.0.1"), int(server.get("port") or 5432))
    await proxy.start()
    conninfo = make_conninfo(
        role_conninfo(infra.database_url, schema, role_password(schema)),
        host="127.0.0.1",
        port=proxy.port,
    )
    pool = create_pool(conninfo, name="outage", max_size=4, timeout=2.0)
    await pool.open(wait=True)
    spec = QueueSpec(
        f"{namespace}.work",
        "tests",
        (f"{namespace}.work",),
        delivery_limit=DELIVERY_LIMIT,
        batch_size=batch_size,
    )
    await rabbit.declare(amqp.track(Topology(exchanges, (spec,))))
    handled: list[str] = []

    async def handler(ctx: MessageContext[Any]) -> None:
        handled.append(str(ctx.envelope.message_id))

    consumer: Consumer[Any] = Consumer(
        service="tests",
        spec=spec,
        exchanges=exchanges,
        broker=rabbit,
        transactions=PostgresTransactions(pool, schema),
        handler=handler,
        authenticity=DEVELOPMENT_VERIFIER,
        infrastructure_backoff=BACKOFF,
        batch_window=0.5,  # a burst below forms one batch, however busy the machine
    )
    await consumer.start()
    try:
        # When the database goes away and messages keep arriving through the outage
        await proxy.cut()
        # (in bursts of batch_size, so that batches meet the outage too)
        for start in range(0, MESSAGES, batch_size):
            burst = [
                new_envelope(
                    PaymentFailed(
                        application_id=f"app-{n}", applicant_email="a@b.org", reason="declined"
                    )
                )
                for n in range(start, start + batch_size)
            ]
            await asyncio.gather(
                *(rabbit.publish(exchanges.events, spec.name, signed(e)) for e in burst)
            )
            await asyncio.sleep(OUTAGE_SECONDS * batch_size / MESSAGES)
        await asyncio.sleep(1)
        # ...and comes back
        await proxy.restore()
        # Then every message is processed, once, and none was dead-lettered
        await eventually(
            lambda: consumer.outcomes["processed"] == MESSAGES,
            timeout=60 + OUTAGE_SECONDS,
            what=f"{MESSAGES} processed",
        )
        assert len(set(handled)) == MESSAGES
        assert await amqp.depth(dead_letter_queue_name(spec.name)) == 0
        assert consumer.outcomes["dead-lettered"] == 0
        assert consumer.outcomes["requeued"] == 0  # held, never bounced back to the queue
    finally:
        await consumer.stop()
        await pool.close()
        await proxy.cut()

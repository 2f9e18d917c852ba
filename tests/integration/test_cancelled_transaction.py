"""A delivery cancelled in the middle of its transaction must not harm the next message.

aio-pika cancels the deliveries in hand when its connection to the broker drops. A cancel
inside psycopg's pipelined ``executemany`` (the outbox rows) left the pooled connection in
pipeline mode, where the next message's claim read "already processed" and the message was
acknowledged unprocessed: the long chaos run lost 562 applications this way after a RabbitMQ
stop. Found by that run's audit; this reproduces it without a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from psycopg_pool import AsyncConnectionPool

from shared.db.transactions import PostgresTransactions
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from tests.support.database import open_role_pool
from tests.support.infra import Infra


async def test_after_cancelled_transactions_every_new_message_is_still_claimed(
    infra: Infra, schema: str
) -> None:
    # Given a pool of a single connection, so every transaction reuses it
    async with open_role_pool(infra, schema, max_size=1) as pool:
        await cancel_then_claim(pool, schema)


async def cancel_then_claim(pool: AsyncConnectionPool, schema: str) -> None:
    transactions = PostgresTransactions(pool, schema)
    events = [
        new_envelope(
            PaymentFailed(reason="declined", application_id=str(i), applicant_email="a@b.org")
        )
        for i in range(50)
    ]

    async def message_in_hand() -> None:
        async with transactions.begin() as tx:
            await tx.claim("work", str(uuid.uuid4()))
            await tx.add_outbox(events)

    not_claimed = []
    for round_ in range(300):
        # When a message's transaction is cancelled at a different point each round
        delivery = asyncio.create_task(message_in_hand())
        await asyncio.sleep(0.0005 * (round_ % 20))
        delivery.cancel()
        with contextlib.suppress(BaseException):
            await delivery
        # Then the next, new message is claimed (not taken for a duplicate)
        async with transactions.begin() as tx:
            if not await tx.claim("work", str(uuid.uuid4())):
                not_claimed.append(round_)
    assert not_claimed == []

"""How fast the relay moves outbox rows to RabbitMQ with publisher confirms.

    set -a; . .run/infra.env; set +a
    .venv/bin/python -m bench.relay_throughput --rows 20000 --batch 500

Uses a throw-away schema, exchange and queue (deleted afterwards); prints rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aio_pika
import psycopg
from psycopg import sql

from shared.broker.rabbitmq import RabbitBroker
from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.events.signing import EventSigner
from shared.outbox.relay import Relay, RelayOptions
from shared.outbox.writer import write_outbox
from shared.topology import (
    ExchangeDeclaration,
    Exchanges,
    QueueDeclaration,
    QueueSpec,
    Topology,
    declarations,
)


async def measure(rows: int, batch: int) -> float:
    admin = os.environ["DATABASE_URL"]
    name = f"bench{uuid.uuid4().hex[:8]}"
    await migrate_service(admin, name, name, [])
    pool = create_pool(role_conninfo(admin, name, name), name=name, max_size=4)
    await pool.open(wait=True)
    broker = await RabbitBroker.connect(os.environ["RABBITMQ_URL"], connection_name=name)
    exchanges = Exchanges.namespaced(name)
    topology = Topology(exchanges, (QueueSpec(f"{name}.sink", "bench", ("#",)),))
    await broker.declare(topology)
    try:
        envelopes = [
            new_envelope(
                PaymentFailed(reason="declined", application_id=str(i), applicant_email="a@b.org")
            )
            for i in range(rows)
        ]
        async with pool.connection() as conn, conn.transaction():
            await write_outbox(conn, name, envelopes)
        relay = Relay(
            pool=pool,
            broker=broker,
            exchange=exchanges.events,
            schemas=[name],
            signers={name: EventSigner.development("api")},
            listen_conninfo=role_conninfo(admin, name, name),
            options=RelayOptions(batch_size=batch),
        )
        started = time.perf_counter()
        while await relay.drain():
            pass
        return rows / (time.perf_counter() - started)
    finally:
        await broker.close()
        await pool.close()
        await drop(admin, name, topology)


async def drop(admin: str, name: str, topology: Topology) -> None:
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
        await conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        await conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    connection = await aio_pika.connect(os.environ["RABBITMQ_URL"])
    async with connection, connection.channel() as channel:
        for item in declarations(topology):
            if isinstance(item, QueueDeclaration):
                await channel.queue_delete(item.name)
            elif isinstance(item, ExchangeDeclaration):
                await channel.exchange_delete(item.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    rate = asyncio.run(measure(args.rows, args.batch))
    print(
        f"relay: {args.rows} rows, batch {args.batch}: {rate:,.0f} rows/s published and confirmed"
    )


if __name__ == "__main__":
    main()

"""How many messages/s one consumer process handles through the full runtime path:
decode, validate, one Postgres transaction (claim + an outbox row), commit, ack.

    set -a; . .run/infra.env; set +a
    .venv/bin/python -m bench.consumer_throughput --messages 10000 --prefetch 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

from bench.relay_throughput import drop
from shared.broker.base import OutgoingMessage
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import Consumer, MessageContext
from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import ApplicationCompleted
from shared.events.envelope import new_envelope
from shared.events.signing import EventVerifier, signed_by_development_key
from shared.logs import configure_logging
from shared.topology import Exchanges, QueueSpec, Topology


async def handler(ctx: MessageContext[Any]) -> None:
    ctx.emit(ApplicationCompleted(application_id="x", applicant_email="a@b.org"))


async def measure(messages: int, prefetch: int) -> tuple[float, float]:
    """Messages/s, and this process's CPU milliseconds per message (steadier than the rate
    on a busy machine)."""
    admin = os.environ["DATABASE_URL"]
    name = f"bench{uuid.uuid4().hex[:8]}"
    await migrate_service(admin, name, name, [])
    pool = create_pool(role_conninfo(admin, name, name), name=name, max_size=prefetch)
    await pool.open(wait=True)
    broker = await RabbitBroker.connect(os.environ["RABBITMQ_URL"], connection_name=name)
    spec = QueueSpec(f"{name}.work", "bench", (f"{name}.work",), prefetch=prefetch)
    topology = Topology(Exchanges.namespaced(name), (spec,))
    await broker.declare(topology)
    try:
        payload = ApplicationCompleted(application_id="x", applicant_email="a@b.org")
        await asyncio.gather(
            *(
                broker.publish(
                    topology.exchanges.events,
                    spec.name,
                    signed_by_development_key(
                        OutgoingMessage.from_envelope(new_envelope(payload)), "api"
                    ),
                )
                for _ in range(messages)
            )
        )
        consumer: Consumer[Any] = Consumer(
            service="bench",
            spec=spec,
            exchanges=topology.exchanges,
            broker=broker,
            transactions=PostgresTransactions(pool, name),
            handler=handler,
            authenticity=EventVerifier.development(),
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        await consumer.start()
        while consumer.outcomes["processed"] < messages:  # noqa: ASYNC110 (polling a counter)
            await asyncio.sleep(0.05)
        rate = messages / (time.perf_counter() - started)
        cpu_ms = (time.process_time() - cpu_started) * 1000 / messages
        await consumer.stop()
        return rate, cpu_ms
    finally:
        await broker.close()
        await pool.close()
        await drop(admin, name, topology)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--log-level", default="INFO", help="INFO logs a line per message")
    args = parser.parse_args()
    configure_logging("bench", args.log_level)
    rate, cpu_ms = asyncio.run(measure(args.messages, args.prefetch))
    print(
        f"consumer: {args.messages} messages, prefetch {args.prefetch}: {rate:,.0f} messages/s,"
        f" {cpu_ms:.2f} ms of consumer CPU per message"
    )


if __name__ == "__main__":
    main()

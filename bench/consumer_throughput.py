"""What the consumer runtime costs per message, against a bare aio-pika consume + ack loop on
the same queue in the same run (the floor: what any consumer of this broker pays).

The runtime's path: decode, validate, one Postgres transaction (claim + an outbox row; with
``--batch-size`` above 1 one transaction for up to that many deliveries), commit, ack. CPU is
this process's (``time.process_time``): steadier than a rate on a shared machine, and the
ratio of the two figures is what the lean-pipeline issue targets (<= 3).

    set -a; . .run/infra.env; set +a
    .venv/bin/python -m bench.consumer_throughput --messages 10000 --prefetch 64 --batch-size 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika

from bench.relay_throughput import drop
from shared.broker.base import BrokerMessage
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import Consumer, MessageContext
from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.events.signing import EventVerifier, signed_by_development_key
from shared.logs import configure_logging
from shared.outcomes import Outcome
from shared.topology import Exchanges, QueueSpec, Topology

PAYLOAD = PaymentFailed(reason="declined", application_id="x", applicant_email="a@b.org")


async def handler(ctx: MessageContext[Any]) -> None:
    ctx.emit(PAYLOAD)


@dataclass(frozen=True)
class Run:
    messages_per_second: float
    cpu_ms_per_message: float


async def fill(broker: RabbitBroker, topology: Topology, queue: str, messages: int) -> None:
    await asyncio.gather(
        *(
            broker.publish(
                topology.exchanges.events,
                queue,
                signed_by_development_key(
                    BrokerMessage.from_envelope(new_envelope(PAYLOAD)), PAYLOAD.published_by
                ),
            )
            for _ in range(messages)
        )
    )


async def bare_loop(url: str, queue: str, messages: int, prefetch: int) -> Run:
    """aio-pika alone: consume and ack, nothing else."""
    connection = await aio_pika.connect(url)
    done = asyncio.Event()
    acked = 0

    async def on_message(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal acked
        await incoming.ack()
        acked += 1
        if acked >= messages:
            done.set()

    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await channel.get_queue(queue, ensure=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        tag = await amqp_queue.consume(on_message)
        await done.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await amqp_queue.cancel(tag)
    return Run(messages / elapsed, cpu * 1000 / messages)


async def runtime_loop(
    broker: RabbitBroker, topology: Topology, spec: QueueSpec, transactions: Any, messages: int
) -> Run:
    consumer: Consumer[Any] = Consumer(
        service="bench",
        spec=spec,
        exchanges=topology.exchanges,
        broker=broker,
        transactions=transactions,
        handler=handler,
        authenticity=EventVerifier.development(),
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    await consumer.start()
    while consumer.outcomes[Outcome.PROCESSED] < messages:  # noqa: ASYNC110 (polling a counter)
        await asyncio.sleep(0.01)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await consumer.stop()
    return Run(messages / elapsed, cpu * 1000 / messages)


async def measure(messages: int, prefetch: int, batch_size: int) -> tuple[Run, Run]:
    """(bare aio-pika, the runtime), one after the other on the same queue."""
    admin = os.environ["DATABASE_URL"]
    url = os.environ["RABBITMQ_URL"]
    name = f"bench{uuid.uuid4().hex[:8]}"
    await migrate_service(admin, name, name, [])
    pool = create_pool(role_conninfo(admin, name, name), name=name, max_size=prefetch)
    await pool.open(wait=True)
    broker = await RabbitBroker.connect(url, connection_name=name)
    spec = QueueSpec(
        f"{name}.work", "bench", (f"{name}.work",), prefetch=prefetch, batch_size=batch_size
    )
    topology = Topology(Exchanges.namespaced(name), (spec,))
    await broker.declare(topology)
    try:
        await fill(broker, topology, spec.name, messages)
        bare = await bare_loop(url, spec.name, messages, prefetch)
        await fill(broker, topology, spec.name, messages)
        runtime = await runtime_loop(
            broker, topology, spec, PostgresTransactions(pool, name), messages
        )
        return bare, runtime
    finally:
        await broker.close()
        await pool.close()
        await drop(admin, name, topology)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG logs a line per message")
    args = parser.parse_args()
    configure_logging("bench", args.log_level)
    bare, runtime = asyncio.run(measure(args.messages, args.prefetch, args.batch_size))
    for label, run in (("bare aio-pika consume+ack", bare), ("consumer runtime", runtime)):
        print(
            f"{label}: {args.messages} messages, prefetch {args.prefetch}:"
            f" {run.messages_per_second:,.0f} messages/s,"
            f" {run.cpu_ms_per_message:.3f} ms CPU per message"
        )
    print(
        f"batch size {args.batch_size}: runtime / bare CPU per message ="
        f" {runtime.cpu_ms_per_message / bare.cpu_ms_per_message:.2f}"
    )


if __name__ == "__main__":
    main()

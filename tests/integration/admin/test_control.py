"""Pause and resume through the control exchange, with a real worker (``run_worker``)."""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
import httpx
from psycopg_pool import AsyncConnectionPool

from shared.broker.rabbitmq import RabbitBroker
from shared.control import Action, control_queue_prefix, new_command
from shared.topology import Topology
from tests.integration.admin.conftest import RunningWorker, announcement, fetch, publish_to_queue
from tests.support.amqp import AmqpInspector
from tests.support.infra import Infra
from tests.support.waiting import eventually


async def send(infra: Infra, topology: Topology, action: Action, queue: str) -> None:
    command = new_command(action, queue, "ops@example.org", datetime.now(UTC))
    connection = await aio_pika.connect(infra.rabbitmq_url)
    async with connection, connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(topology.exchanges.control)
        await exchange.publish(
            aio_pika.Message(command.encode(), message_id=command.message_id), routing_key=""
        )


async def consumers_of(amqp: AmqpInspector, queue: str) -> int:
    """Consumers of ``queue`` now; -1 while it does not exist yet."""
    channel = await amqp.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return -1
    finally:
        if not channel.is_closed:
            await channel.close()


async def test_a_paused_queue_stays_paused_across_a_restart_until_resumed(
    infra: Infra,
    worker: RunningWorker,
    rabbit: RabbitBroker,
    amqp: AmqpInspector,
    pool: AsyncConnectionPool,
) -> None:
    queue = worker.topology.queues[0].name
    # Given a running worker consuming its queue
    await worker.start()
    await eventually(lambda: _has_consumers(amqp, queue, 1), timeout=20, what="a consumer")

    # When an operator pauses the queue
    await send(infra, worker.topology, "pause", queue)

    # Then the worker stops consuming and records the pause in its schema
    await eventually(lambda: _has_consumers(amqp, queue, 0), timeout=20, what="no consumer")
    assert await fetch(
        pool, "SELECT paused, updated_by FROM queue_controls WHERE queue = %s", queue
    ) == [(True, "ops@example.org")]
    first = announcement(1)
    await publish_to_queue(rabbit, worker.topology, first)

    # When the worker restarts
    before = await _control_queues(infra, worker)
    await worker.stop()
    await worker.start()

    async def listening_again() -> bool:
        return bool(await _control_queues(infra, worker) - before)

    await eventually(listening_again, timeout=20, what="the restarted worker's control queue")

    # Then the queue is still paused: the message waits, nobody consumes
    assert await consumers_of(amqp, queue) == 0
    assert await amqp.depth(queue) == 1
    assert worker.handled == []

    # When the operator resumes it
    await send(infra, worker.topology, "resume", queue)

    # Then the waiting message is processed, and the timeline recorded it
    await eventually(lambda: worker.handled == [str(first.message_id)], timeout=20, what="it")
    assert await consumers_of(amqp, queue) == 1
    assert await fetch(pool, "SELECT paused FROM queue_controls WHERE queue = %s", queue) == [
        (False,)
    ]

    async def logged() -> bool:
        rows = await fetch(
            pool,
            "SELECT queue, attempt, outcome FROM message_log WHERE message_id = %s",
            str(first.message_id),
        )
        return rows == [(queue, 1, "processed")]

    await eventually(logged, timeout=5, what="the timeline row")


async def test_commands_for_other_queues_and_garbage_are_ignored(
    infra: Infra, worker: RunningWorker, amqp: AmqpInspector, pool: AsyncConnectionPool
) -> None:
    queue = worker.topology.queues[0].name
    await worker.start()
    await eventually(lambda: _has_consumers(amqp, queue, 1), timeout=20, what="a consumer")

    # When a command names somebody else's queue, and a body that is no command arrives
    await send(infra, worker.topology, "pause", "mailer.somebody-else")
    connection = await aio_pika.connect(infra.rabbitmq_url)
    async with connection, connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(worker.topology.exchanges.control)
        await exchange.publish(aio_pika.Message(b"{oops"), routing_key="")
    # and then a real pause, which is applied after them (commands are handled in order)
    await send(infra, worker.topology, "pause", queue)
    await eventually(lambda: _has_consumers(amqp, queue, 0), timeout=20, what="the pause")

    # Then only the worker's own queue has a control row
    assert await fetch(pool, "SELECT queue FROM queue_controls") == [(queue,)]


async def _has_consumers(amqp: AmqpInspector, queue: str, count: int) -> bool:
    return await consumers_of(amqp, queue) == count


async def _control_queues(infra: Infra, worker: RunningWorker) -> set[str]:
    """The worker's control queues (one per running process: it starts by declaring it)."""
    base = (infra.management_url or "http://127.0.0.1:15672/").rstrip("/")
    auth = (infra.management_user, infra.management_password)
    async with httpx.AsyncClient(auth=auth, timeout=5) as client:
        response = await client.get(f"{base}/api/queues/%2F", params={"columns": "name"})
    prefix = control_queue_prefix(worker.schema)
    return {q["name"] for q in response.json() if q["name"].startswith(prefix)}

"""The broker as the project runs it (local servers, compose) hands a retried message back soon
after a moment when it could not: a quorum queue's at-least-once dead-lettering that found no
target waits ``dead_letter_worker_publisher_confirm_timeout`` before it tries again.

Found in a chaos run: RabbitMQ, restarted, expired a retry tier's message before it had
recovered the retry exchange; with the default (3 minutes) the application waited that long
and the run nearly timed out. The project's nodes set 15 s (devtools/servers/rabbitmq.py,
deploy/rabbitmq/advanced.config). Here the missing exchange is made on purpose.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from tests.support.amqp import AmqpInspector
from tests.support.infra import Infra

# Well past the project's 15 s, well short of RabbitMQ's default 180 s.
PATIENCE_SECONDS = 45


async def test_a_retry_that_found_no_exchange_is_handed_back_once_the_exchange_exists(
    infra: Infra, namespace: str, amqp: AmqpInspector
) -> None:
    if not infra.controllable:
        pytest.skip("someone else's broker: its configuration is not the project's")
    retry, exchange, work = f"{namespace}.retry", f"{namespace}.later", f"{namespace}.work"
    connection = await aio_pika.connect(infra.rabbitmq_url)
    try:
        channel = await connection.channel()
        # Given a retry tier whose dead-letter exchange does not exist (yet)
        await channel.declare_queue(
            retry,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": 100,
                "x-dead-letter-exchange": exchange,
                "x-dead-letter-routing-key": work,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await channel.default_exchange.publish(
            aio_pika.Message(b"retry me", message_id="m1"), routing_key=retry
        )
        await asyncio.sleep(2)  # expired, and found no exchange to go to
        # When the exchange and the work queue appear
        target = await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT)
        queue = await channel.declare_queue(
            work, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(target, routing_key=work)
        # Then the message reaches the work queue soon, not minutes later
        [message] = await amqp.take(work, 1, timeout=PATIENCE_SECONDS)
        assert message.message_id == "m1"
    finally:
        cleanup = await connection.channel()
        for name in (retry, work):
            await cleanup.queue_delete(name)
        await cleanup.exchange_delete(exchange)
        await connection.close()

from __future__ import annotations

import aio_pika
import pytest

from shared.broker.base import BrokerMessage
from shared.broker.rabbitmq import RabbitBroker
from shared.errors import TopologyMismatch, Unroutable
from shared.topology import Exchanges, QueueSpec, QueueType, Topology
from tests.support.amqp import AmqpInspector
from tests.support.infra import Infra


async def test_declaring_twice_is_a_no_op(
    rabbit: RabbitBroker, exchanges: Exchanges, namespace: str, amqp: AmqpInspector
) -> None:
    topology = amqp.track(Topology(exchanges, (QueueSpec(f"{namespace}.work", "tests", ("a.*",)),)))
    await rabbit.declare(topology)
    await rabbit.publish(exchanges.events, "a.b", BrokerMessage(body=b"{}", message_id="m1"))

    await rabbit.declare(topology)

    assert await amqp.depth(f"{namespace}.work") == 1  # still there, nothing reset
    for tier in ("2s", "4s", "8s"):
        assert await amqp.depth(f"{namespace}.work.retry.{tier}") == 0
    assert await amqp.depth(f"{namespace}.work.dlq") == 0


async def test_a_queue_declared_with_other_arguments_is_reported_clearly(
    rabbit: RabbitBroker, exchanges: Exchanges, namespace: str, amqp: AmqpInspector
) -> None:
    name = f"{namespace}.work"
    await rabbit.declare(amqp.track(Topology(exchanges, (QueueSpec(name, "tests", ("k",)),))))
    changed = Topology(exchanges, (QueueSpec(name, "tests", ("k",), queue_type=QueueType.CLASSIC),))

    with pytest.raises(
        TopologyMismatch, match=f"queue '{name}' already exists with other arguments"
    ):
        await rabbit.declare(changed)


async def test_an_unroutable_publish_is_an_error(
    rabbit: RabbitBroker, exchanges: Exchanges, amqp: AmqpInspector
) -> None:
    await rabbit.declare(amqp.track(Topology(exchanges, ())))
    with pytest.raises(Unroutable):
        await rabbit.publish(
            exchanges.events, "nobody.listens", BrokerMessage(body=b"{}", message_id="m")
        )


async def test_work_queues_are_durable_quorum_queues(
    rabbit: RabbitBroker, exchanges: Exchanges, namespace: str, amqp: AmqpInspector, infra: Infra
) -> None:
    name = f"{namespace}.work"
    await rabbit.declare(amqp.track(Topology(exchanges, (QueueSpec(name, "tests", ("k",)),))))
    connection = await aio_pika.connect(infra.rabbitmq_url)
    async with connection, connection.channel() as channel:
        # a passive declare with the quorum type succeeds only if it is one
        queue = await channel.declare_queue(name, durable=True, passive=True)
        assert queue.durable

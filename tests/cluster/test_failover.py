"""A service's connection to the cluster outlives the node it is on: killed (kill -9) or
paused on the minority side of a partition, it moves to a surviving node, its consumer
resumes on the quorum queue's new leader, and every confirmed message is delivered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import httpx
import pytest

from devtools.cluster import ADMIN, Cluster, Node
from services.api.admin.management import ManagementApi
from shared.broker.base import BrokerMessage, Delivery
from shared.broker.failover import NodeListConnection
from shared.broker.nodes import node_urls
from shared.broker.rabbitmq import RabbitBroker
from shared.errors import PublishFailed

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]

EXCHANGE = "failover"


@dataclass
class Received:
    ids: set[str] = field(default_factory=set)
    after_fault: int = 0
    fault: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, delivery: Delivery) -> None:
        if delivery.message.message_id:
            self.ids.add(delivery.message.message_id)
        if self.fault.is_set():
            self.after_fault += 1
        await delivery.ack()


@pytest.fixture
async def vhost(cluster: Cluster) -> AsyncIterator[str]:
    name = f"failover_{uuid.uuid4().hex[:8]}"
    base = cluster.nodes[0].management_url
    async with httpx.AsyncClient(auth=ADMIN, timeout=30) as client:
        (await client.put(f"{base}/api/vhosts/{name}")).raise_for_status()
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        (
            await client.put(f"{base}/api/permissions/{name}/guest", json=permissions)
        ).raise_for_status()
    yield name
    async with httpx.AsyncClient(auth=ADMIN, timeout=30) as client:
        for node in cluster.nodes:  # whichever answers
            try:
                await client.delete(f"{node.management_url}/api/vhosts/{name}")
                break
            except httpx.HTTPError:
                continue


async def declare_queue(url: str, queue: str) -> None:
    """A quorum queue on all three nodes, led by the node ``url`` names (client-local)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        declared = await channel.declare_queue(
            queue,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-queue-leader-locator": "client-local"},
        )
        await declared.bind(exchange, routing_key=queue)


def node_of(cluster: Cluster, broker: RabbitBroker) -> Node:
    connection = broker._connection
    assert isinstance(connection, NodeListConnection)
    port = int(connection.node.rpartition(":")[2])
    return next(node for node in cluster.nodes if node.amqp_port == port)


async def publish_all(
    broker: RabbitBroker, queue: str, ids: list[str], confirmed: list[str]
) -> None:
    """As the relay does: a message without a confirm is published again (same id)."""
    for message_id in ids:
        while True:
            try:
                await broker.publish(EXCHANGE, queue, BrokerMessage(b"{}", message_id=message_id))
                break
            except PublishFailed:
                await asyncio.sleep(0.5)
        confirmed.append(message_id)
        await asyncio.sleep(0.01)


async def wait_for(condition: object, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("fault", ["kill", "partition"])
async def test_consumers_resume_on_a_surviving_node_and_nothing_is_lost(
    cluster: Cluster, vhost: str, fault: str
) -> None:
    # Given a consumer and a publisher connected through the node list, the consumer on the
    # node that leads its quorum queue
    urls = node_urls(cluster.amqp_url(vhost), cluster.nodes_setting)
    queue = f"work.{fault}"
    consumer = await RabbitBroker.connect(urls, connection_name=f"consumer-{fault}")
    victim = node_of(cluster, consumer)
    await declare_queue(urls[cluster.nodes.index(victim)], queue)
    publisher = await RabbitBroker.connect(urls, connection_name=f"publisher-{fault}-x")
    received = Received()
    subscription = await consumer.consume(queue, 20, received.handle)
    ids = [str(uuid.uuid4()) for _ in range(400)]
    confirmed: list[str] = []
    publishing = asyncio.create_task(publish_all(publisher, queue, ids, confirmed))
    try:
        await wait_for(lambda: len(received.ids) >= 100, 60)
        # When that node is killed (or cut off from the other two, and so paused) mid-stream
        received.fault.set()
        if fault == "kill":
            cluster.kill(victim)
        else:
            cluster.partition(victim)
        # Then the consumer goes on, on another node, and every confirmed message arrives
        await asyncio.wait_for(publishing, 120)
        await wait_for(lambda: set(confirmed) <= received.ids, 120)
        assert received.after_fault > 0
        assert node_of(cluster, consumer) is not victim
        assert set(ids) == received.ids
    finally:
        publishing.cancel()
        cluster.heal()
        cluster.start(victim)
        await subscription.close()
        await consumer.close()
        await publisher.close()
        cluster.wait_running(cluster.nodes)


async def test_the_admin_api_reads_queue_statistics_from_a_node_that_answers(
    cluster: Cluster, vhost: str
) -> None:
    # Given RABBITMQ_MANAGEMENT_URL listing a node that does not answer before one that does
    urls = node_urls(cluster.amqp_url(vhost), cluster.nodes_setting)
    await declare_queue(urls[0], "work.stats")
    silent = "http://127.0.0.1:9/"  # discard: nothing listens
    management = ManagementApi(f"{silent},{cluster.nodes[1].management_url}/", *ADMIN, vhost)
    try:
        # When the admin API asks for the queues, then the answering node gives them
        assert "work.stats" in await management.queues()
    finally:
        await management.close()

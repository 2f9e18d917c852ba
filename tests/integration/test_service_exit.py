"""A service whose start-up fails exits, so that its supervisor restarts it (crash-only), even
while its broker connection is reconnecting; and nothing it opened goes on in the background.

The cluster chaos run found the contrary (seed 362556170; tests/cluster/
test_restart_during_partition.py does it on the cluster): the mailer's start-up failed when
its node paused, while its connection was already reconnecting to the next node; aio-pika's
reconnection task, cancelled at the end of the process in the middle of that attempt, took
the cancel for a failed attempt and tried again, and ``asyncio.run`` waited for it for ever.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from shared.broker.failover import connect_to_nodes
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer.runtime import MessageContext
from shared.errors import TopologyMismatch
from shared.lifecycle import LEFTOVER_GRACE_SECONDS, STUCK_EXIT_CODE
from shared.settings import CoreSettings
from shared.topology import Exchanges, QueueSpec, Topology
from shared.worker import run_worker
from tests.support.amqp import AmqpInspector
from tests.support.database import role_password
from tests.support.infra import ROOT, Infra
from tests.support.tcp_proxy import TcpProxy


def at(url: str, port: int) -> str:
    """``url`` (login, virtual host) on another port of this machine."""
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{port}"))


@pytest.fixture
def silent_node() -> Iterator[int]:
    """A port that takes TCP connections and never answers, as a node cut off by a partition
    does: a connection attempt to it waits for its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.fixture
async def broker_link(infra: Infra) -> Any:
    """The network between a service and the broker, which the test can cut."""
    server = urlsplit(infra.rabbitmq_url)
    proxy = TcpProxy(server.hostname or "127.0.0.1", server.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.cut()


async def test_a_service_failing_while_its_connection_reconnects_exits_and_says_why(
    infra: Infra, broker_link: TcpProxy, silent_node: int, amqp: AmqpInspector, namespace: str
) -> None:
    # Given a service starting up, connected through the first of two nodes, the second silent
    amqp.track(Topology(Exchanges.namespaced(namespace), ()))
    nodes = [at(infra.rabbitmq_url, broker_link.port), at(infra.rabbitmq_url, silent_node)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.failing_service",
        namespace,
        *nodes,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"connected", line
        # When its connection is lost (it reconnects, to the silent node first) and its
        # start-up fails meanwhile
        await broker_link.cut()
        # Then the process exits, soon, with an error a supervisor restarts it for
        code = await asyncio.wait_for(process.wait(), LEFTOVER_GRACE_SECONDS + 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stdout.read()).decode(errors="replace")
    assert code == STUCK_EXIT_CODE, output
    # And it says what failed and what would not stop
    assert "start-up failed: the broker connection was lost" in output
    assert "tasks still running after the service ended" in output
    assert "__connection_factory" in output


class WorkerSettings(CoreSettings):
    def db_password(self, service: str) -> str:
        return role_password(service)


async def test_a_worker_whose_start_up_fails_closes_its_broker_connection(
    infra: Infra,
    schema: str,
    namespace: str,
    exchanges: Exchanges,
    amqp: AmqpInspector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a queue of the worker's topology already on the broker with other arguments
    spec = QueueSpec(f"{namespace}.work", schema, ("work.done",), max_attempts=1)
    topology = amqp.track(Topology(exchanges, (spec,)))
    connection = await aio_pika.connect(infra.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(spec.name, durable=True)  # classic, not quorum
    opened: list[RabbitBroker] = []
    real_connect = RabbitBroker.connect

    async def connect(*args: Any, **kwargs: Any) -> RabbitBroker:
        broker = await real_connect(*args, **kwargs)
        opened.append(broker)
        return broker

    monkeypatch.setattr(RabbitBroker, "connect", connect)

    async def handle(ctx: MessageContext[Any]) -> None:
        raise AssertionError("nothing is consumed")

    settings = WorkerSettings(rabbitmq_url=infra.rabbitmq_url, database_url=infra.database_url)
    # When the worker starts, and its declaration is refused
    with pytest.raises(TopologyMismatch):
        await run_worker(
            service=schema,
            settings=settings,
            handlers={spec.name: handle},
            stop=asyncio.Event(),
            topology=topology,
        )
    # Then the connection it had opened is closed: nothing reconnects in the background
    assert opened
    assert all(broker._connection.is_closed for broker in opened)


async def test_a_connection_given_up_on_is_closed_not_left_connecting(infra: Infra) -> None:
    # Given a node that takes a second to answer
    server = urlsplit(infra.rabbitmq_url)
    slow = TcpProxy(server.hostname or "127.0.0.1", server.port or 5672, delay=1.0)
    await slow.start()
    try:
        # When the caller gives up on connecting before it answers
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                connect_to_nodes([at(infra.rabbitmq_url, slow.port)], connection_name="slow"),
                0.3,
            )
        # Then no connection is made behind its back once the node answers
        await asyncio.sleep(2.0)
        assert slow.open_connections == 0
    finally:
        await slow.cut()

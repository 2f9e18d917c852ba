"""A service restarted while its first node is being cut off from the other two consumes again.

The cluster chaos run found it (seed 362556170): the mailer, killed and restarted by its
supervisor while node 3 (its first node) was partitioned, connected to node 3, declared its
topology there (which waits: the quorum queues' leaders are across the partition), and when
node 3 paused its start-up failed. The process then hung for good instead of exiting: its
connection's reconnection task, still open, ignored the cancel at the end of the process
(``shared.lifecycle``). Here the real mailer of the whole system is killed at several moments
of node 3's partition; after each heal it must consume every lane again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from devtools.chaos.cluster_faults import ClusterInfra
from devtools.cluster import ADMIN, Cluster, Node
from devtools.system import RunningSystem
from shared.broker.nodes import spread
from shared.system_topology import MAILER_LANES
from tests.support.infra import Infra

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(900)]

SERVICE = "mailer"
# Seconds from the partition's start to the kill: before the node notices (0.75-1.25 x
# net_ticktime, 10 s), so that the restarted mailer connects to it and starts there.
KILL_AFTER = (0.0, 1.5, 3.0, 4.5)
PARTITION_SECONDS = 30.0
# From the heal to consumers on every lane: a restart's backoff (at most 10 s), the start-up.
CONSUMING_WITHIN = 90.0


@pytest.fixture
async def system(infra: Infra, cluster: Cluster, tmp_path: Path) -> AsyncIterator[RunningSystem]:
    servers = ClusterInfra(cluster, infra.database_url)
    running = RunningSystem(servers, tmp_path, servers.service_environment(), prefix="restart")
    await running.start()
    yield running
    await running.stop()


def first_node(cluster: Cluster, connection_name: str) -> Node:
    """The node a service's connection starts on (``shared.broker.nodes.spread``)."""
    ports = [str(node.amqp_port) for node in cluster.nodes]
    first = spread(ports, connection_name)[0]
    return next(node for node in cluster.nodes if str(node.amqp_port) == first)


async def lanes_without_consumer(observer: Node, vhost: str) -> list[str]:
    """The mailer's lanes no consumer reads, as ``observer`` (a node of the majority) sees."""
    missing = []
    queues = f"{observer.management_url}/api/queues/{quote(vhost, safe='')}"
    async with httpx.AsyncClient(auth=ADMIN, timeout=10) as client:
        for lane in MAILER_LANES.values():
            url = f"{queues}/{lane.name}"
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError:
                missing.append(lane.name)
                continue
            if not response.json().get("consumers"):
                missing.append(lane.name)
    return missing


async def consuming_every_lane(observer: Node, system: RunningSystem, when: str) -> None:
    deadline = time.monotonic() + CONSUMING_WITHIN
    while missing := await lanes_without_consumer(observer, system.name):
        assert time.monotonic() < deadline, (
            f"{when}: no consumer on {missing} within {CONSUMING_WITHIN} s; mailer restarts: "
            f"{system.supervisor.restarts(SERVICE)}; logs in {system.folder / 'logs'}"
        )
        await asyncio.sleep(1)


async def test_a_service_restarted_while_its_node_is_cut_off_consumes_again(
    cluster: Cluster, system: RunningSystem
) -> None:
    # Given the whole system on the cluster, the mailer's connections starting on one node
    node = first_node(cluster, SERVICE)
    assert first_node(cluster, f"{SERVICE}.control") is node
    observer = next(other for other in cluster.nodes if other is not node)
    await consuming_every_lane(observer, system, "at the start")
    for kill_after in KILL_AFTER:
        # When that node is cut off from the other two, and the mailer is killed (and so
        # restarted by its supervisor) before the node notices and pauses
        began = time.monotonic()
        await asyncio.to_thread(cluster.partition, node)
        try:
            await asyncio.sleep(kill_after)
            system.supervisor.kill(SERVICE)
            await asyncio.sleep(PARTITION_SECONDS - (time.monotonic() - began))
        finally:
            await asyncio.to_thread(cluster.heal)
        await asyncio.to_thread(cluster.rejoin)
        # Then the mailer consumes every lane again
        await consuming_every_lane(
            observer, system, f"after the heal (killed {kill_after} s into the partition)"
        )

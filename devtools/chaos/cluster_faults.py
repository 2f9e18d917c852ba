"""The cluster chaos run's faults (``python -m devtools.chaos --cluster``, ``make
chaos-cluster``), on the three local nodes of ``devtools.cluster``, beside the service kills
and the poison of every chaos run:

- ``kill-node``: kill -9 of the node leading the most quorum queues; started again after
  ``NODE_DOWN_SECONDS``.
- ``partition-node``: a node cut off from the other two for 30-60 s (seeded), then healed.
  It is on the minority side: it pauses (pause_minority) and its clients move.
- ``isolate-services``: the services can reach only a minority node: it is cut off from the
  other two, and the other two's AMQP ports are blocked, for ``ISOLATION_SECONDS``. The node
  pauses, so the services have no broker at all: the API goes on accepting (Postgres only),
  the outboxes grow, completions wait.
- ``rolling-restart``: each node in turn stopped and started, as an operator upgrades.

Each fault is recorded with its node and times (seconds since the run started), and the
cluster is whole again (every node running and seeing the others) before it ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from devtools.chaos.breakers import Breakers
from devtools.cluster import ADMIN, Cluster, Node
from devtools.system import RunningSystem
from shared.manifest import processes

log = structlog.get_logger("chaos.cluster")

NODE_DOWN_SECONDS = 20.0
PARTITION_SECONDS = (30.0, 60.0)
ISOLATION_SECONDS = 30.0
# Clients notice a node that went silent (a partition drops packets) after about three
# heartbeats: 10 s here instead of RabbitMQ's 60 s, as recommended for a cluster.
HEARTBEAT_SECONDS = 10
# Roughly how long each takes on 2 cores (for spreading them over the load).
CLUSTER_FAULTS = {
    "kill-node": 50.0,
    "partition-node": 60.0,
    "isolate-services": 45.0,
    "rolling-restart": 100.0,
}

T = TypeVar("T")


@dataclass
class ClusterInfra:
    """The servers of a cluster run: the cluster's nodes, and Postgres from elsewhere (never
    restarted here). The management URL is that of a node no fault has made unreachable."""

    cluster: Cluster
    database_url: str
    out: set[int] = field(default_factory=set)
    mode: str = "cluster"
    management_user: str = ADMIN[0]
    management_password: str = ADMIN[1]

    @property
    def rabbitmq_url(self) -> str:
        return f"{self.cluster.amqp_url()}?heartbeat={HEARTBEAT_SECONDS}"

    @property
    def management_url(self) -> str:
        reachable = [node for node in self.cluster.nodes if node.index not in self.out]
        return (reachable or self.cluster.nodes)[0].management_url + "/"

    @property
    def controllable(self) -> bool:
        return False  # the single-node server faults (scripts/infra.sh) are not for a cluster

    def service_environment(self) -> dict[str, str]:
        return {"RABBITMQ_NODES": self.cluster.nodes_setting}


class ClusterBreakers(Breakers):
    def __init__(
        self, system: RunningSystem, *, servers: ClusterInfra, started: float, rng: random.Random
    ) -> None:
        super().__init__(system, controls_servers=False, started=started, mode=servers.mode)
        self.servers = servers
        self.cluster = servers.cluster
        self.rng = rng
        self.faults: list[dict[str, Any]] = []

    def plan(self, rng: random.Random, rounds: int) -> list[str]:
        actions = [f"kill:{process.name}" for process in processes()] * rounds
        actions += list(CLUSTER_FAULTS) * rounds
        rng.shuffle(actions)
        return ["poison", *actions]

    async def do(self, action: str) -> None:
        if action not in CLUSTER_FAULTS:
            await super().do(action)
            return
        began = self.now()
        self.record.timeline.append((round(began, 1), action))
        log.info("chaos action", action=action, at=round(began, 1))
        fault: dict[str, Any] = {"action": action, "began": round(began, 1)}
        try:
            if action == "kill-node":
                await self._kill_node(fault)
            elif action == "partition-node":
                await self._partition_node(fault)
            elif action == "isolate-services":
                await self._isolate_services(fault)
            else:
                await self._rolling_restart(fault)
        finally:
            fault["ended"] = round(self.now(), 1)
            self.faults.append(fault)
            self.record.restarts[action] += 1
            self.record.durations.setdefault(action, []).append(round(self.now() - began, 2))

    async def _kill_node(self, fault: dict[str, Any]) -> None:
        leaders = await self._run(self.cluster.leaders)
        node = self.cluster.busiest(leaders)
        fault.update(node=node.name, leaders_before=dict(leaders))
        self.servers.out.add(node.index)
        await self._run(lambda: self.cluster.kill(node))
        fault["killed_at"] = round(self.now(), 1)
        await asyncio.sleep(NODE_DOWN_SECONDS)
        fault["restarted_at"] = round(self.now(), 1)
        await self._back(node, fault)
        fault["back_at"] = round(self.now(), 1)
        fault["leaders_after"] = dict(await self._run(self.cluster.leaders))

    async def _partition_node(self, fault: dict[str, Any]) -> None:
        node = self.rng.choice(self.cluster.nodes)
        seconds = round(self.rng.uniform(*PARTITION_SECONDS), 1)
        fault.update(node=node.name, seconds=seconds)
        self.servers.out.add(node.index)
        await self._run(lambda: self.cluster.partition(node))
        await asyncio.sleep(seconds)
        fault["healed_at"] = round(self.now(), 1)
        await self._back(node, fault)
        fault["back_at"] = round(self.now(), 1)

    async def _isolate_services(self, fault: dict[str, Any]) -> None:
        node = self.rng.choice(self.cluster.nodes)
        majority = [other for other in self.cluster.nodes if other is not node]
        fault.update(services_reach=node.name, seconds=ISOLATION_SECONDS)
        self.servers.out.add(node.index)

        def cut() -> None:
            self.cluster.partition(node)
            self.cluster.block_amqp(majority)

        await self._run(cut)
        await asyncio.sleep(ISOLATION_SECONDS)
        fault["healed_at"] = round(self.now(), 1)
        await self._back(node, fault)
        fault["back_at"] = round(self.now(), 1)

    async def _rolling_restart(self, fault: dict[str, Any]) -> None:
        steps = []
        for node in self.cluster.nodes:
            began = round(self.now(), 1)
            self.servers.out.add(node.index)
            restarted = await self._run(lambda node=node: self.cluster.restart(node))  # type: ignore[misc]
            self.servers.out.discard(node.index)
            steps.append({"node": node.name, "began": began, "back_at": round(self.now(), 1)})
            if restarted:
                fault.setdefault("operator_restarts", []).extend(restarted)
            await asyncio.sleep(5)  # the clients settle on the nodes before the next one stops
        fault["nodes"] = steps

    async def _back(self, node: Node, fault: dict[str, Any]) -> None:
        """Heal, start what is down, and wait until every node sees the others running; what
        had to be restarted for that (``Cluster.rejoin``) is recorded as an operator's
        intervention."""

        def whole() -> list[str]:
            self.cluster.heal()
            self.cluster.launch(node)
            return self.cluster.rejoin()

        restarted = await self._run(whole)
        if restarted:
            log.warning("nodes restarted to rejoin the cluster", nodes=restarted)
            fault.setdefault("operator_restarts", []).extend(restarted)
        self.servers.out.discard(node.index)

    async def ensure_servers_up(self) -> None:
        """Whatever happened, leave the cluster whole."""
        await self._run(self.cluster.up)
        self.servers.out.clear()

    async def _run(self, work: Callable[[], T]) -> T:
        """The cluster tool blocks (rabbitmqctl, sleeps): off the event loop the load runs on."""
        return await asyncio.to_thread(work)

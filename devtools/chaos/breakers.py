"""What the chaos scheduler breaks: processes (kill -9; the supervisor restarts them), the
servers (through ``scripts/infra.sh``), and the queues (poison messages).

Every action is recorded with its start and end (seconds since the run started), so the audit
can tell a 503 inside the Postgres restart window from one outside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aio_pika
import aio_pika.exceptions
import structlog

from devtools.system import RunningSystem
from shared.broker.failover import connect_to_nodes
from shared.broker.nodes import node_urls
from shared.errors import UnknownEventType
from shared.events.catalog import publisher_of
from shared.events.signing import EventSigner
from shared.manifest import processes
from shared.system_topology import SYSTEM_TOPOLOGY

log = structlog.get_logger("chaos")

SERVER_ACTIONS = ("restart-rabbitmq", "restart-postgres", "stop-rabbitmq")
RABBITMQ_OUTAGE_SECONDS = 30.0


def work_queues() -> list[str]:
    return [spec.name for spec in SYSTEM_TOPOLOGY.queues]


def poison_bodies(queue: str) -> list[tuple[str, str, bytes]]:
    """One of each kind (kind, message id, body): not JSON, an unknown type, a known type with
    an invalid payload. The envelope's message id is also the AMQP message id."""

    def envelope(message_id: str, event_type: str, payload: dict[str, object]) -> bytes:
        return json.dumps(
            {
                "message_id": message_id,
                "type": event_type,
                "version": 1,
                "occurred_at": datetime.now(UTC).isoformat(),
                "correlation_id": f"chaos-poison-{queue}",
                "payload": payload,
            }
        ).encode()

    known = SYSTEM_TOPOLOGY.queue(queue).bindings[0]
    ids = [str(uuid.uuid4()) for _ in range(3)]
    return [
        ("malformed-json", ids[0], b'{"message_id": "not json'),
        ("unknown-type", ids[1], envelope(ids[1], "chaos.no_such_event", {"x": 1})),
        ("schema-invalid", ids[2], envelope(ids[2], known, {"application_id": 42})),
    ]


def poison_signature(body: bytes) -> dict[str, str]:
    """The development signature of a known event type's owner, so that an invalid payload is
    dead-lettered for its payload (``InvalidPayload``), not as a forgery."""
    try:
        event_type = json.loads(body)["type"]
        return EventSigner.development(publisher_of(event_type)).headers(body)
    except (ValueError, KeyError, UnknownEventType):
        return {}


@dataclass
class Record:
    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    poison: dict[str, str] = field(default_factory=dict)  # message id -> queue/kind
    postgres_windows: list[tuple[float, float]] = field(default_factory=list)
    durations: dict[str, list[float]] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)


class Breakers:
    def __init__(
        self, system: RunningSystem, *, controls_servers: bool, started: float, mode: str = ""
    ) -> None:
        self.system = system
        self.controls_servers = controls_servers
        self.mode = mode
        self.started = started
        self.record = Record()
        self.rabbitmq_stopped = False

    def plan(self, rng: random.Random, rounds: int) -> list[str]:
        """Each action at least once (``rounds`` times each), in a seeded order; server actions
        only when the servers are ours to break."""
        # every process of the manifest (the sandbox and the SMTP catcher are the world outside)
        actions = [f"kill:{process.name}" for process in processes()] * rounds
        if self.controls_servers:
            actions += list(SERVER_ACTIONS) * rounds
        else:
            self.record.skipped = list(SERVER_ACTIONS)
        rng.shuffle(actions)
        # Poison early, so it has long enough to reach every DLQ while the rest goes on.
        return ["poison", *actions]

    def now(self) -> float:
        return time.monotonic() - self.started

    async def do(self, action: str) -> None:
        began = self.now()
        self.record.timeline.append((round(began, 1), action))
        log.info("chaos action", action=action, at=round(began, 1))
        if action.startswith("kill:"):
            name = action.removeprefix("kill:")
            if self.system.supervisor.pid(name) is None:
                await self._wait_running(name)
            self.system.supervisor.kill(name)
            self.record.kills[name] += 1
        elif action == "poison":
            await self.poison()
        elif action == "restart-postgres":
            await self.infra("restart-postgres")
            self.record.postgres_windows.append((began, self.now()))
            self.record.restarts["postgres"] += 1
        elif action == "restart-rabbitmq":
            await self.infra("restart-rabbitmq")
            self.record.restarts["rabbitmq"] += 1
        elif action == "stop-rabbitmq":
            await self.infra("stop-rabbitmq")
            self.rabbitmq_stopped = True
            await asyncio.sleep(RABBITMQ_OUTAGE_SECONDS)
            await self.infra("start-rabbitmq")
            self.rabbitmq_stopped = False
            self.record.restarts["rabbitmq_outage"] += 1
        self.record.durations.setdefault(action, []).append(round(self.now() - began, 2))

    async def infra(self, command: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devtools.servers",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # the servers' recorded mode, whatever URLs this process was given
            env={**os.environ, "INFRA_MODE": self.mode} if self.mode else None,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            failure = output.decode(errors="replace")
            raise RuntimeError(f"devtools.servers {command} failed: {failure}")

    async def ensure_servers_up(self) -> None:
        """Whatever happened (even an action cut short), leave both servers running for
        everyone else: ``up`` starts what is down and leaves alone what runs."""
        if self.controls_servers:
            await self.infra("up")
            self.rabbitmq_stopped = False

    async def poison(self, timeout: float = 180) -> None:
        """Straight into every work queue, through the retry exchange (routing key = queue).
        The broker may be down (another timeline restarts it): try again until it is back; a
        message published twice is the same poison (same message id)."""
        pending = [(queue, *poison) for queue in work_queues() for poison in poison_bodies(queue)]
        deadline = time.monotonic() + timeout
        while pending:
            try:
                await self._publish_poison(pending)
            except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as error:
                if time.monotonic() > deadline:
                    raise
                log.info("poison waits for the broker", error=str(error))
                await asyncio.sleep(2)

    async def _publish_poison(self, pending: list[tuple[str, str, str, bytes]]) -> None:
        nodes = self.system.env.get("RABBITMQ_NODES", "")  # any node of a cluster
        urls = node_urls(self.system.rabbitmq_url, nodes)
        connection = await connect_to_nodes(urls, connection_name="chaos.poison")
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(SYSTEM_TOPOLOGY.exchanges.retry)
            while pending:
                queue, kind, message_id, body = pending[0]
                self.record.poison[message_id] = f"{queue}/{kind}"
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=message_id,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={"x-chaos-poison": kind, **poison_signature(body)},
                    ),
                    routing_key=queue,
                    mandatory=True,
                )
                pending.pop(0)

    async def _wait_running(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.system.supervisor.pid(name) is None and time.monotonic() < deadline:  # noqa: ASYNC110 (polls another object's state)
            await asyncio.sleep(0.2)

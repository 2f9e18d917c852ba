"""What the benchmark reads from the running system: backlog over time, completion, lags.

Everything comes from the system's own database (as admin) and broker, never from logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import psycopg

from services.api.statuses import TERMINAL
from shared.manifest import outbox_sources
from shared.system_topology import SYSTEM_TOPOLOGY

OUTBOX_SOURCES = tuple(outbox_sources())
# The terminal statuses as the database stores them.
TERMINAL_STATUSES = sorted(status.value for status in TERMINAL)


@dataclass
class Sample:
    at: float
    outbox_unpublished: int
    queued: int
    completed: int
    terminal: int


@dataclass
class Sampler:
    database_url: str
    rabbitmq_url: str
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)

    started: float = 0.0  # time.monotonic() of the first sample; ``at`` counts from it

    async def run(self, stop: asyncio.Event) -> None:
        self.started = started = time.monotonic()
        outbox = " + ".join(
            f"(SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL)" for s in OUTBOX_SOURCES
        )
        statuses = ", ".join(f"'{s}'" for s in TERMINAL_STATUSES)
        query = (
            f"SELECT {outbox}, count(*) FILTER (WHERE status = 'completed'),"
            f" count(*) FILTER (WHERE status IN ({statuses})) FROM api.applications"
        )
        connection = await aio_pika.connect(self.rabbitmq_url)
        async with (
            await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as db,
            connection,
        ):
            channel = await connection.channel()
            while not stop.is_set():
                row = await (await db.execute(query)).fetchone()
                assert row is not None
                queued = await queued_messages(channel)
                self.samples.append(
                    Sample(
                        time.monotonic() - started, int(row[0]), queued, int(row[1]), int(row[2])
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)


async def queued_messages(channel: aio_pika.abc.AbstractChannel) -> int:
    """Messages ready in the system's work queues."""
    queued = 0
    for spec in SYSTEM_TOPOLOGY.queues:
        declared = await channel.declare_queue(spec.name, passive=True)
        queued += declared.declaration_result.message_count or 0
    return queued


async def queued_now(rabbitmq_url: str) -> int:
    async with await aio_pika.connect(rabbitmq_url) as connection:
        return await queued_messages(await connection.channel())


async def wait_until_terminal(database_url: str, expected: int, timeout: float) -> float:
    """Seconds until ``expected`` applications are terminal (raises on timeout)."""
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        while True:
            terminal = await _terminal(db)
            if terminal >= expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"{terminal} of {expected} applications terminal after {timeout}s"
                )
            await asyncio.sleep(0.5)


async def terminal_count(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        return await _terminal(db)


async def application_count(database_url: str) -> int:
    """Applications written, whatever their state: a load's clients each make exactly one."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        row = await (await db.execute("SELECT count(*) FROM api.applications")).fetchone()
        return int(row[0]) if row else 0


async def _terminal(db: psycopg.AsyncConnection[Any]) -> int:
    """Applications in a final state."""
    row = await (
        await db.execute(
            "SELECT count(*) FROM api.applications WHERE status = ANY(%s)", (TERMINAL_STATUSES,)
        )
    ).fetchone()
    return int(row[0]) if row else 0


def consumers_of(event_type: str) -> list[str]:
    """The services (schemas) whose queues are bound to ``event_type``."""
    return sorted({spec.service for spec in SYSTEM_TOPOLOGY.queues if event_type in spec.bindings})


def percentiles(values: list[float], *points: float) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {f"p{p:g}": float("nan") for p in points}
    return {
        f"p{p:g}": ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
        for p in points
    }


async def end_to_end_ms(database_url: str) -> list[float]:
    """Per completed application: submission to completion."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        rows = await (
            await db.execute(
                "SELECT extract(epoch FROM (updated_at - created_at)) * 1000"
                " FROM api.applications WHERE status = 'completed'"
            )
        ).fetchall()
    return [float(r[0]) for r in rows]


async def lags_ms(database_url: str, since_seconds: float) -> tuple[list[float], list[float]]:
    """Outbox lag (row created → published) and event lag (created → first consumer's
    commit) of the api's application.submitted events from the last ``since_seconds``."""
    consumers = " UNION ALL ".join(
        f"SELECT message_id, processed_at FROM {s}.processed_messages"
        for s in consumers_of("application.submitted")
    )
    query = f"""
        SELECT extract(epoch FROM (o.published_at - o.created_at)) * 1000,
               extract(epoch FROM (min(c.processed_at) - o.created_at)) * 1000
        FROM api.outbox o
        JOIN ({consumers}) c ON c.message_id = o.message_id
        WHERE o.type = 'application.submitted' AND o.published_at IS NOT NULL
          AND o.created_at > now() - make_interval(secs => %s)
        GROUP BY o.id, o.published_at, o.created_at
    """
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
        rows: list[Any] = await (await db.execute(query, (since_seconds,))).fetchall()
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows]

"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work right now).

The API's work needs Postgres only: a submission is accepted into the database with its
outbox row, and the relay carries it to RabbitMQ later. So only the database decides
readiness; the broker is reported beside it. A load balancer or Kubernetes that took the API
out of service during a broker outage would turn away the submissions the outbox exists to
keep accepting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from services.api.resources import Resources, resources

router = APIRouter(tags=["health"])

# The AMQP 0-9-1 protocol header; a broker answers it with a Connection.Start method frame.
AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
AMQP_METHOD_FRAME = 1


async def database_ready(pool: AsyncConnectionPool, timeout: float) -> bool:
    async def select_one() -> bool:
        async with pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")
        return True

    try:
        return await asyncio.wait_for(select_one(), timeout)
    except Exception:
        return False


async def broker_ready(rabbitmq_urls: Sequence[str], timeout: float) -> bool:
    """A node of the broker (any of a cluster's) speaks AMQP on its port (no login: the API
    does not publish; the services move to whichever node answers)."""
    answers = await asyncio.gather(*(node_ready(url, timeout) for url in rabbitmq_urls))
    return any(answers)


async def node_ready(rabbitmq_url: str, timeout: float) -> bool:
    parts = urlsplit(rabbitmq_url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)

    async def handshake() -> bool:
        reader, writer = await asyncio.open_connection(
            parts.hostname or "127.0.0.1", port, ssl=parts.scheme == "amqps" or None
        )
        try:
            writer.write(AMQP_PROTOCOL_HEADER)
            await writer.drain()
            first = await reader.read(1)
            return first == bytes([AMQP_METHOD_FRAME])
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(handshake(), timeout)
    except Exception:
        return False


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "the database is unreachable: submissions cannot be accepted"}},
)
async def readyz(deps: Annotated[Resources, Depends(resources)]) -> JSONResponse:
    timeout = deps.settings.readiness_timeout_seconds
    database, broker = await asyncio.gather(
        database_ready(deps.pool, timeout),
        broker_ready(deps.settings.broker_urls(), timeout),
    )
    checks = {
        "database": "ok" if database else "unreachable",
        "rabbitmq": "ok" if broker else "unreachable",
    }
    body: dict[str, object] = {"status": "ready" if database else "not ready", "checks": checks}
    if not database:
        body["detail"] = "unreachable: database"
    elif not broker:
        # Still ready: accepted submissions wait in the outbox until the broker is back.
        body["detail"] = "rabbitmq unreachable: submissions are accepted and queued in the outbox"
    return JSONResponse(body, status_code=200 if database else 503)

"""Writing events to a service's outbox, inside the caller's transaction.

The NOTIFY is delivered only when that transaction commits, which is exactly when the relay
may publish the rows: it wakes at once instead of waiting for its next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from shared.events.envelope import Envelope

OUTBOX_CHANNEL = "outbox"


async def write_outbox(
    conn: AsyncConnection[Any], schema: str, envelopes: Sequence[Envelope]
) -> None:
    if not envelopes:
        return
    rows = [
        (envelope.message_id, envelope.type, envelope.correlation_id, envelope.model_dump_json())
        for envelope in envelopes
    ]
    insert = sql.SQL(
        "INSERT INTO {}.outbox (message_id, type, correlation_id, body) VALUES (%s, %s, %s, %s)"
    ).format(sql.Identifier(schema))
    async with conn.cursor() as cursor:
        await cursor.executemany(insert, rows)
        await cursor.execute("SELECT pg_notify(%s, %s)", (OUTBOX_CHANNEL, schema))

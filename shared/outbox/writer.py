"""Writing events to a service's outbox, inside the caller's transaction.

ONE statement inserts every row and sends the NOTIFY, whatever the number of events. The rows
travel as arrays in binary (``unnest``): the text format would escape every quote of every
JSON body. The notification is delivered only when the transaction commits, which is exactly
when the relay may publish the rows: it wakes at once instead of waiting for its next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from psycopg import AsyncConnection, sql

from shared.events.envelope import Envelope

OUTBOX_CHANNEL = "outbox"

_WRITE = """
WITH written AS (
    INSERT INTO {table} (message_id, type, correlation_id, body)
    SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[])
)
SELECT pg_notify(%s, %s)
"""


@lru_cache(maxsize=64)
def _write_statement(schema: str) -> bytes:
    """Composed once per schema, not once per message."""
    return sql.SQL(_WRITE).format(table=sql.Identifier(schema, "outbox")).as_bytes(None)


async def write_outbox(
    conn: AsyncConnection[Any], schema: str, envelopes: Sequence[Envelope]
) -> None:
    if not envelopes:
        return
    await conn.execute(
        _write_statement(schema),
        (
            [envelope.message_id for envelope in envelopes],
            [envelope.type for envelope in envelopes],
            [envelope.correlation_id for envelope in envelopes],
            [envelope.model_dump_json() for envelope in envelopes],
            OUTBOX_CHANNEL,
            schema,
        ),
    )

"""How far an outbox is behind: one query, read by the relay (its metrics) and by the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

# The oldest row by id (the partial index on unpublished ids), not min(created_at): cheap.
_BACKLOG = """
SELECT count(*),
       count(*) FILTER (WHERE attempts > 0),
       (SELECT created_at FROM {table} WHERE published_at IS NULL ORDER BY id LIMIT 1),
       clock_timestamp()
FROM {table}
WHERE published_at IS NULL
"""


@dataclass(frozen=True)
class OutboxBacklog:
    source: str
    unpublished: int
    failing: int  # rows the broker refused at least once (unroutable)
    oldest_created_at: datetime | None
    oldest_age_seconds: float | None


async def read_backlog(conn: AsyncConnection[Any], schema: str) -> OutboxBacklog:
    query = sql.SQL(_BACKLOG).format(table=sql.Identifier(schema, "outbox"))
    row = await (await conn.execute(query)).fetchone()
    assert row is not None
    unpublished, failing, oldest, now = row
    age = (now - oldest).total_seconds() if oldest is not None else None
    return OutboxBacklog(schema, int(unpublished), int(failing), oldest, age)

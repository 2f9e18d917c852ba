"""The consumer's unit of work on Postgres: one transaction on one pooled connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from shared.events.envelope import Envelope
from shared.outbox.writer import write_outbox


class PostgresTransaction:
    def __init__(self, connection: AsyncConnection[Any], schema: str) -> None:
        self.connection = connection
        self.schema = schema

    async def claim(self, consumer: str, message_id: str) -> bool:
        cursor = await self.connection.execute(
            sql.SQL(
                "INSERT INTO {}.processed_messages (consumer, message_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING"
            ).format(sql.Identifier(self.schema)),
            (consumer, message_id),
        )
        return cursor.rowcount == 1

    async def add_outbox(self, envelopes: Sequence[Envelope]) -> None:
        await write_outbox(self.connection, self.schema, envelopes)


class PostgresTransactions:
    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.connection() as connection, connection.transaction():
            yield PostgresTransaction(connection, self.schema)

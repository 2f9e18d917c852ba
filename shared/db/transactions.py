"""The consumer's unit of work on Postgres: one transaction on one pooled connection.

A service whose handlers work through repositories subclasses ``PostgresTransaction`` to
expose them (built on ``connection``) and passes its class to ``PostgresTransactions``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

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
                " ON CONFLICT DO NOTHING RETURNING 1"
            ).format(sql.Identifier(self.schema)),
            (consumer, message_id),
        )
        # The inserted row itself, not ``rowcount``: a count reads -1 on a connection left in
        # pipeline mode, and "not claimed" means the message is acknowledged unprocessed.
        return await cursor.fetchone() is not None

    async def add_outbox(self, envelopes: Sequence[Envelope]) -> None:
        await write_outbox(self.connection, self.schema, envelopes)


PgTxT = TypeVar("PgTxT", bound=PostgresTransaction)


class PostgresTransactions(Generic[PgTxT]):
    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        transaction_type: type[PgTxT] = PostgresTransaction,  # type: ignore[assignment]
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.transaction_type = transaction_type

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[PgTxT]:
        async with self.pool.connection() as connection:
            try:
                async with connection.transaction():
                    yield self.transaction_type(connection, self.schema)
            except BaseException as error:
                if not isinstance(error, Exception):
                    # Cancelled mid-statement (aio-pika cancels the deliveries in hand when
                    # its connection drops): results may still be on their way, and the next
                    # message would read them as its own: a claim of a new message read as
                    # "already processed", and the message acknowledged unprocessed. The
                    # connection is closed, so the pool replaces it instead of lending it out.
                    await connection.close()
                raise

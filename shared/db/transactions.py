"""The consumer's unit of work on Postgres: one transaction on one pooled connection.

A service whose handlers work through repositories subclasses ``PostgresTransaction`` to
expose them (built on ``connection``) and passes its class to ``PostgresTransactions``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from shared.events.envelope import Envelope
from shared.outbox.writer import write_outbox

_CLAIM = """
INSERT INTO {table} (consumer, message_id) VALUES (%s, %s)
ON CONFLICT DO NOTHING RETURNING 1
"""
_CLAIM_MANY = """
INSERT INTO {table} (consumer, message_id) SELECT %s, unnest(%b::uuid[])
ON CONFLICT DO NOTHING RETURNING message_id
"""


@lru_cache(maxsize=64)
def _claim_statements(schema: str) -> tuple[bytes, bytes]:
    """Composed once per schema, not once per message."""
    table = sql.Identifier(schema, "processed_messages")
    return (
        sql.SQL(_CLAIM).format(table=table).as_bytes(None),
        sql.SQL(_CLAIM_MANY).format(table=table).as_bytes(None),
    )


class PostgresTransaction:
    def __init__(self, connection: AsyncConnection[Any], schema: str) -> None:
        self.connection = connection
        self.schema = schema

    async def claim(self, consumer: str, message_id: str) -> bool:
        claim, _ = _claim_statements(self.schema)
        cursor = await self.connection.execute(claim, (consumer, message_id))
        # The inserted row itself, not ``rowcount``: a count reads -1 on a connection left in
        # pipeline mode, and "not claimed" means the message is acknowledged unprocessed.
        return await cursor.fetchone() is not None

    async def claim_many(self, consumer: str, message_ids: Collection[str]) -> set[str]:
        _, claim_many = _claim_statements(self.schema)
        cursor = await self.connection.execute(claim_many, (consumer, list(message_ids)))
        return {str(message_id) for (message_id,) in await cursor.fetchall()}

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

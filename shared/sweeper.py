"""The sweeper: trims ``processed_messages`` and published outbox rows past a retention, and
each table a service lists with a retention rule of its own (``shared.retention``).

Runs on a cron schedule; every replica of a service runs one, and a session advisory lock
makes only one of them work at a time. Deletes go in batches, each its own short statement,
so the sweeper never holds long locks on the hot tables.

The retention must outlive any redelivery window: a message id forgotten too early would let
a late redelivery be processed twice.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from croniter import croniter
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from shared.retention import RetentionRule

log = structlog.get_logger("sweeper")

_DELETE_BATCH = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE {age} < now() - %s LIMIT %s
))
"""


@dataclass(frozen=True)
class SweepResult:
    ran: bool
    processed_deleted: int = 0
    outbox_deleted: int = 0
    message_log_deleted: int = 0
    # Rows deleted per retention rule (by table name).
    retained_deleted: dict[str, int] = field(default_factory=dict)


def sweeper_lock_key(schema: str) -> int:
    return zlib.crc32(f"sweeper:{schema}".encode())


def next_run(schedule: str, after: datetime) -> datetime:
    nxt: datetime = croniter(schedule, after).get_next(datetime)
    return nxt


class Sweeper:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        *,
        schedule: str = "*/15 * * * *",
        retention: timedelta = timedelta(days=7),
        batch_size: int = 5000,
        rules: Sequence[RetentionRule] = (),
    ) -> None:
        if not croniter.is_valid(schedule):
            raise ValueError(f"not a cron expression: {schedule!r}")
        self.pool = pool
        self.schema = schema
        self.schedule = schedule
        self.retention = retention
        self.batch_size = batch_size
        self.rules = tuple(rules)

    async def sweep_once(self) -> SweepResult:
        async with self.pool.connection() as conn:
            key = sweeper_lock_key(self.schema)
            locked = await (
                await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            ).fetchone()
            if not locked or not locked[0]:
                log.info("another replica is sweeping", schema=self.schema)
                return SweepResult(ran=False)
            try:
                processed = await self._delete(conn, "processed_messages", ("processed_at",))
                outbox = await self._delete(conn, "outbox", ("published_at",))
                timeline = await self._delete(conn, "message_log", ("at",))
                retained = {
                    rule.table: await self._delete(conn, rule.table, rule.columns, rule.keep)
                    for rule in self.rules
                }
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        result = SweepResult(True, processed, outbox, timeline, retained)
        log.info(
            "swept", schema=self.schema, **{k: v for k, v in vars(result).items() if k != "ran"}
        )
        return result

    async def _delete(
        self,
        conn: AsyncConnection[Any],
        table: str,
        columns: tuple[str, ...],
        keep: timedelta | None = None,
    ) -> int:
        """Rows whose age, read from the first of ``columns`` that is set, is past ``keep``."""
        age: sql.Composable = sql.Identifier(columns[0])  # as it is: an index on it serves
        if len(columns) > 1:
            age = sql.SQL("coalesce({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        statement = sql.SQL(_DELETE_BATCH).format(table=sql.Identifier(self.schema, table), age=age)
        retention = self.retention if keep is None else keep
        total = 0
        while True:
            cursor = await conn.execute(statement, (retention, self.batch_size))
            total += cursor.rowcount
            if cursor.rowcount < self.batch_size:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            delay = (next_run(self.schedule, now) - now).total_seconds()
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep_once()
            except Exception as error:  # a failed sweep is retried at the next tick
                log.warning("sweep failed", schema=self.schema, error=repr(error))

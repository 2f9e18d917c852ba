"""The per-message timeline: which consumer saw a message, at which attempt, with what outcome.

``MessageLog`` is an observer of the consumer runtime (``shared.consumer.runtime.Observation``)
that keeps one row per delivery in the service's own ``message_log`` table. Together with the
outbox row (created, published) that gives a message's whole story:

    outbox created -> published -> verifier attempt 1 retried -> attempt 2 processed
                                -> mailer attempt 1 processed -> ...

Cheap on the hot path: observing only appends to an in-memory buffer. A background task writes
the buffer every 100 ms, or as soon as 200 rows wait, as ONE multi-row INSERT (``unnest``) on
an autocommit connection of the service's pool: one short statement per batch instead of a
round trip per message, outside every message's transaction. The price: a crash loses at most
the last ~100 ms of rows, and a row appears up to 100 ms after the delivery. The timeline is a
diagnostic aid, so that is the right trade; correctness lives in ``processed_messages``.

If the database is unreachable the rows wait in the buffer, at most ``max_buffered`` (oldest
dropped first, with a warning): the timeline never holds back processing.

Read side: the API's admin routes read every service's ``message_log`` and ``outbox`` through
the read-only ``ops`` role.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.consumer.runtime import Observation

log = structlog.get_logger("timeline")

FLUSH_INTERVAL = 0.1
BATCH_SIZE = 200
MAX_BUFFERED = 10_000
RETRY_INTERVAL = 1.0  # after a failed write

_INSERT = """
INSERT INTO {table} (message_id, queue, attempt, outcome, seconds, error_type, error, at)
SELECT * FROM unnest(
    %s::text[], %s::text[], %s::integer[], %s::text[], %s::float8[], %s::text[], %s::text[],
    %s::timestamptz[]
)
"""


@dataclass(frozen=True)
class LogRow:
    message_id: str
    queue: str
    attempt: int
    outcome: str
    seconds: float
    error_type: str | None
    error: str | None
    at: datetime


def log_row(observation: Observation, at: datetime) -> LogRow:
    return LogRow(
        message_id=observation.message_id or "",
        queue=observation.queue.name,
        attempt=observation.attempt,
        outcome=observation.outcome,
        seconds=observation.seconds,
        error_type=observation.error_type,
        error=observation.error,
        at=at,
    )


def insert_parameters(rows: list[LogRow]) -> tuple[list[object], ...]:
    """The rows as one array per column, for the ``unnest`` insert."""
    return (
        [r.message_id for r in rows],
        [r.queue for r in rows],
        [r.attempt for r in rows],
        [r.outcome for r in rows],
        [r.seconds for r in rows],
        [r.error_type for r in rows],
        [r.error for r in rows],
        [r.at for r in rows],
    )


class MessageLog:
    """Observer -> buffer -> batched inserts into ``<schema>.message_log``.

    ``start()`` the writer, hand ``observe`` to the consumers, ``close()`` after the consumers
    stopped (it writes what is left)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        schema: str,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        batch_size: int = BATCH_SIZE,
        max_buffered: int = MAX_BUFFERED,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.clock = clock
        self.dropped = 0
        self._buffer: deque[LogRow] = deque(maxlen=max_buffered)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._statement = sql.SQL(_INSERT).format(table=sql.Identifier(schema, "message_log"))

    async def observe(self, observation: Observation) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("timeline buffer full, oldest rows dropped", dropped=self.dropped)
        self._buffer.append(log_row(observation, self.clock()))
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_forever())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while self._buffer:
            if not await self.flush():
                log.warning("timeline rows lost at shutdown", rows=len(self._buffer))
                return

    async def flush(self) -> bool:
        """Write up to one batch; False if the database refused (the rows stay buffered)."""
        batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
        if not batch:
            return True
        try:
            async with self.pool.connection() as conn:
                await conn.execute(self._statement, insert_parameters(batch))
        except Exception as error:
            self._buffer.extendleft(reversed(batch))
            log.warning("timeline write failed, will retry", error=repr(error), rows=len(batch))
            return False
        return True

    async def _write_forever(self) -> None:
        wait = self.flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()
            wait = self.flush_interval
            while self._buffer:
                if not await self.flush():
                    # The database is away: retry less often than every tick meanwhile.
                    wait = RETRY_INTERVAL
                    break

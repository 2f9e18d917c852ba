"""The relay: moves committed outbox rows to the broker.

Per source table: claim a batch ``FOR UPDATE SKIP LOCKED`` in id order, publish it with all
confirms in flight, mark the confirmed rows published, commit. Claiming by state (unpublished
rows), not by an offset, means rows that commit out of id order are never skipped, and several
relays side by side never publish the same row in the same pass.

Woken by NOTIFY on commit, with a poll as fallback. A notification names the schema whose
outbox has a new row, and only the sources named since the last pass are read: under load most
commits come from one or two services, and reading the quiet ones on every wake-up cost more
than publishing. The poll reads every source. When the broker is unreachable nothing is
marked: the rows wait, and the relay tries again with backoff until the broker returns. A row
the broker cannot route (no queue bound: a topology error) stays unpublished with its error,
retried later on its own schedule so it does not hold up the rows behind it; so does a row the
broker refuses the relay's login (a type its topic permissions do not list: code newer than the
definitions the broker loaded).

Each row is signed with the key of the service whose outbox it came from (``signers``, by
source schema): consumers accept an event only when its type's owner signed it
(``shared.events.signing``), so a row of a type its source does not own is refused downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
import psycopg_pool
import structlog
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from shared.broker.base import Broker, BrokerMessage
from shared.errors import PublishFailed, PublishRefused, Unroutable
from shared.events.envelope import CONTENT_TYPE
from shared.events.signing import EventSigner
from shared.outbox.backlog import read_backlog
from shared.outbox.writer import OUTBOX_CHANNEL

if TYPE_CHECKING:
    from shared.metrics import Metrics

log = structlog.get_logger("relay")

# Rows the broker will not take until someone fixes the topology or the permissions: each waits
# with its error on a back-off of its own.
NOT_FOR_NOW = (Unroutable, PublishRefused)

_CLAIM = """
SELECT id, message_id, type, correlation_id, body, created_at
FROM {table}
WHERE published_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= now())
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_MARK_PUBLISHED = "UPDATE {table} SET published_at = clock_timestamp() WHERE id = ANY(%s)"
# Both halves walk the partial index of unpublished rows: cheap enough to sample every few seconds.
_MARK_UNROUTABLE = """
UPDATE {table} AS o
SET attempts = o.attempts + 1,
    last_error = failed.error,
    next_attempt_at = now()
        + least(interval '1 second' * power(2, o.attempts), interval '60 seconds')
FROM unnest(%s::bigint[], %s::text[]) AS failed(id, error)
WHERE o.id = failed.id
"""


class _TextAsBytes(Loader):
    """The relay's claim reads text columns as the bytes stored: a body goes to the broker as
    it was written, never decoded to ``str`` and encoded again."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


@dataclass(frozen=True)
class RelayOptions:
    batch_size: int = 500
    poll_interval: float = 1.0
    max_backoff: float = 5.0


class Relay:
    def __init__(
        self,
        *,
        pool: psycopg_pool.AsyncConnectionPool,
        broker: Broker,
        exchange: str,
        schemas: Sequence[str],
        signers: Mapping[str, EventSigner],
        listen_conninfo: str,
        options: RelayOptions = RelayOptions(),
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.exchange = exchange
        self.schemas = list(schemas)
        unsigned = [schema for schema in self.schemas if schema not in signers]
        if unsigned:
            raise ValueError(f"no event signer for the outbox of {', '.join(unsigned)}")
        self.signers = dict(signers)
        self.listen_conninfo = listen_conninfo
        self.options = options
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._notified: set[str] = set()  # sources named by notifications since the last pass

    async def publish_batch(self, schema: str) -> int:
        """Publish one batch from ``schema``'s outbox; return how many rows it published.

        Raises ``PublishFailed`` when the broker is unreachable (nothing is marked then).
        """
        table = sql.Identifier(schema, "outbox")
        async with self.pool.connection() as conn, conn.transaction():
            claim = sql.SQL(_CLAIM).format(table=table)
            async with conn.cursor() as cursor:
                cursor.adapters.register_loader("text", _TextAsBytes)
                await cursor.execute(claim, (self.options.batch_size,))
                rows = await cursor.fetchall()
            if not rows:
                return 0
            signer = self.signers[schema]
            results = list(
                await asyncio.gather(
                    *(self._publish(signer, row) for row in rows), return_exceptions=True
                )
            )
            await self._tell_refused_apart(signer, rows, results)
            published = [
                row[0] for row, result in zip(rows, results, strict=True) if result is None
            ]
            unroutable = [
                (row[0], result)
                for row, result in zip(rows, results, strict=True)
                if isinstance(result, NOT_FOR_NOW)
            ]
            await conn.execute(sql.SQL(_MARK_PUBLISHED).format(table=table), (published,))
            if unroutable:
                for row_id, error in unroutable:
                    log.error(
                        "outbox row not published", schema=schema, id=row_id, error=str(error)
                    )
                await conn.execute(
                    sql.SQL(_MARK_UNROUTABLE).format(table=table),
                    ([row_id for row_id, _ in unroutable], [str(e) for _, e in unroutable]),
                )
        if self.metrics is not None and published:
            created = [row[5] for row, result in zip(rows, results, strict=True) if result is None]
            self.metrics.record_published(schema, created, datetime.now(UTC))
        failure = next(
            (r for r in results if isinstance(r, BaseException) and not isinstance(r, NOT_FOR_NOW)),
            None,
        )
        if failure is not None:
            if not isinstance(failure, PublishFailed):
                raise failure
            raise PublishFailed(
                f"{len(rows) - len(published) - len(unroutable)} of {len(rows)} rows not confirmed"
            ) from failure
        return len(published)

    async def backlog(self, schema: str) -> tuple[int, float]:
        """How many rows of ``schema``'s outbox wait, and the oldest one's age in seconds."""
        async with self.pool.connection() as conn:
            backlog = await read_backlog(conn, schema)
        return backlog.unpublished, backlog.oldest_age_seconds or 0.0

    async def _tell_refused_apart(
        self,
        signer: EventSigner,
        rows: Sequence[tuple[object, ...]],
        results: list[BaseException | None],
    ) -> None:
        """A refusal closes the channel, and every publish in flight on it fails with the same
        error: publish those rows again one at a time, so only the ones really refused wait."""
        for index, result in enumerate(results):
            if isinstance(result, PublishRefused):
                try:
                    await self._publish(signer, rows[index])
                    results[index] = None
                except PublishFailed as error:
                    results[index] = error

    async def _publish(self, signer: EventSigner, row: tuple[object, ...]) -> None:
        _row_id, message_id, event_type, correlation_id, body, created_at = row
        assert isinstance(body, bytes) and isinstance(event_type, bytes)
        assert isinstance(correlation_id, bytes)
        routing_key = event_type.decode()
        message = BrokerMessage(
            body=body,
            message_id=str(message_id),
            content_type=CONTENT_TYPE,
            type=routing_key,
            correlation_id=correlation_id.decode(),
            timestamp=created_at,  # type: ignore[arg-type]
            headers=signer.headers(body),
        )
        await self.broker.publish(self.exchange, routing_key, message)

    async def drain(self, sources: Collection[str] | None = None) -> set[str]:
        """One pass over ``sources`` (every source by default); return those that may have
        more rows waiting (a full batch)."""
        more = set()
        for schema in self.schemas if sources is None else self._in_order(sources):
            if await self.publish_batch(schema) >= self.options.batch_size:
                more.add(schema)
        return more

    def _in_order(self, sources: Collection[str]) -> list[str]:
        return [schema for schema in self.schemas if schema in sources]

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name="outbox-listener")
        backoff = 0.0
        due = set(self.schemas)  # at start every source may hold rows
        try:
            while not stop.is_set():
                self._wake.clear()  # a NOTIFY during the pass below sets it again
                due |= self._notified
                self._notified.clear()
                try:
                    due = await self.drain(due)
                    backoff = 0.0
                except (PublishFailed, psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
                    backoff = min(max(backoff * 2, 0.1), self.options.max_backoff)
                    log.warning("relay pass failed, will retry", error=str(error), backoff=backoff)
                    await _wait(stop, backoff)
                    continue  # ``due`` is kept: the failed sources are tried again
                if not due:
                    await _wait_any(stop, self._wake, self.options.poll_interval)
                    if not self._wake.is_set():  # the poll, not a notification
                        due = set(self.schemas)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN for commits; reconnect after failures. The poll covers any gap."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.listen_conninfo, autocommit=True
                ) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(OUTBOX_CHANNEL)))
                    # Rows may have committed while nobody was listening.
                    self._notified.update(self.schemas)
                    self._wake.set()
                    async for notification in conn.notifies():
                        # The payload is the schema; anything else means "look everywhere".
                        named = notification.payload
                        self._notified.update([named] if named in self.schemas else self.schemas)
                        self._wake.set()
            except psycopg.Error as error:
                log.warning("outbox listener lost, reconnecting", error=str(error))
                await _wait(stop, self.options.max_backoff)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

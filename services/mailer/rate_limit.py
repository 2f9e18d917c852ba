"""A token bucket per lane, shared by every mailer replica through Postgres.

The maths is a pure function (``take_token``); ``TAKE_TOKEN_SQL`` does the same in one
atomic statement. A token is taken in its own short autocommit statement on a connection of
its own, never inside the message's transaction: a row lock held across the SMTP call would
serialize the lane across replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from psycopg_pool import AsyncConnectionPool

# A floor on the sleep between attempts, so an almost-full bucket does not spin.
MIN_WAIT_SECONDS = 0.001


@dataclass(frozen=True)
class LaneRate:
    refill_per_second: float
    capacity: float


class TakeResult(NamedTuple):
    granted: bool
    tokens: float  # left in the bucket afterwards
    wait_seconds: float  # until one token is there (0 when granted)


def refill(tokens: float, *, capacity: float, refill_per_second: float, elapsed: float) -> float:
    """Tokens after ``elapsed`` seconds; a clock seen going backwards adds nothing."""
    return min(capacity, tokens + max(0.0, elapsed) * refill_per_second)


def take_token(
    tokens: float, *, capacity: float, refill_per_second: float, elapsed: float
) -> TakeResult:
    available = refill(
        tokens, capacity=capacity, refill_per_second=refill_per_second, elapsed=elapsed
    )
    if available >= 1.0:
        return TakeResult(True, available - 1.0, 0.0)
    return TakeResult(False, available, (1.0 - available) / refill_per_second)


# take_token() in SQL. The CTE locks the row (FOR UPDATE waits for a concurrent taker and then
# sees its result); updated_at never moves backwards, so concurrent takers whose now() is a
# little older than the last update get no refill instead of a double one.
TAKE_TOKEN_SQL = """
WITH current AS (
    SELECT lane,
           refill_per_second,
           least(capacity,
                 tokens + greatest(0, extract(epoch FROM now() - updated_at)::double precision)
                          * refill_per_second) AS available
    FROM rate_buckets
    WHERE lane = %(lane)s
    FOR UPDATE
)
UPDATE rate_buckets AS bucket
SET tokens = CASE WHEN current.available >= 1 THEN current.available - 1
                  ELSE current.available END,
    updated_at = greatest(bucket.updated_at, now())
FROM current
WHERE bucket.lane = current.lane
RETURNING current.available >= 1 AS granted,
          CASE WHEN current.available >= 1 THEN 0
               ELSE (1 - current.available) / current.refill_per_second END AS wait_seconds
"""

CONFIGURE_SQL = """
INSERT INTO rate_buckets (lane, tokens, capacity, refill_per_second, updated_at)
VALUES (%(lane)s, %(capacity)s, %(capacity)s, %(refill_per_second)s, now())
ON CONFLICT (lane) DO UPDATE
SET capacity = excluded.capacity,
    refill_per_second = excluded.refill_per_second,
    tokens = least(rate_buckets.tokens, excluded.capacity)
"""


class RateLimiter(Protocol):
    async def acquire(self, lane: str) -> float:
        """Wait for a token of ``lane``; return the seconds waited."""


class PostgresRateLimiter:
    def __init__(self, pool: AsyncConnectionPool, rates: Mapping[str, LaneRate]) -> None:
        self.pool = pool  # autocommit connections: each statement is its own transaction
        self.rates = dict(rates)
        # One taker per lane in this process at a time; the others queue here, first come
        # first served. Without it every waiting mail of a lane wakes when the next token is
        # due and all of them update the same bucket row: hundreds of statements a second on
        # one hot row, for the one token each refill grants.
        self._turns = {lane: asyncio.Lock() for lane in rates}

    async def configure(self) -> None:
        """Create the lanes' buckets, or apply changed rates (the last replica started wins)."""
        async with self.pool.connection() as connection:
            for lane, rate in self.rates.items():
                await connection.execute(
                    CONFIGURE_SQL,
                    {
                        "lane": lane,
                        "capacity": rate.capacity,
                        "refill_per_second": rate.refill_per_second,
                    },
                )

    async def try_take(self, lane: str) -> tuple[bool, float]:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(TAKE_TOKEN_SQL, {"lane": lane})
            row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"no rate bucket for lane {lane!r}; configure() was not run")
        return bool(row[0]), float(row[1])

    async def acquire(self, lane: str) -> float:
        started = time.monotonic()
        async with self._turns.setdefault(lane, asyncio.Lock()):
            while True:
                granted, wait = await self.try_take(lane)
                if granted:
                    return time.monotonic() - started
                await asyncio.sleep(max(wait, MIN_WAIT_SECONDS))


class MemoryRateLimiter:
    """The double for tests: the same maths on a local clock, one process only."""

    def __init__(self, rates: Mapping[str, LaneRate]) -> None:
        self.rates = dict(rates)
        self._tokens = {lane: rate.capacity for lane, rate in rates.items()}
        self._updated = {lane: time.monotonic() for lane in rates}
        self.granted: dict[str, int] = {lane: 0 for lane in rates}

    async def acquire(self, lane: str) -> float:
        started = time.monotonic()
        rate = self.rates[lane]
        while True:
            now = time.monotonic()
            result = take_token(
                self._tokens[lane],
                capacity=rate.capacity,
                refill_per_second=rate.refill_per_second,
                elapsed=now - self._updated[lane],
            )
            self._tokens[lane], self._updated[lane] = result.tokens, now
            if result.granted:
                self.granted[lane] += 1
                return time.monotonic() - started
            await asyncio.sleep(max(result.wait_seconds, MIN_WAIT_SECONDS))

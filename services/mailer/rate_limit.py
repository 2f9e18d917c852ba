"""A token bucket per lane, shared by every mailer replica through Postgres.

The maths is a pure function (``take_tokens``); ``TAKE_TOKENS_SQL`` does the same in one
atomic statement. Tokens are taken in their own short autocommit statement on a connection of
their own, never inside the message's transaction: a row lock held across the SMTP call would
serialize the lane across replicas. A replica takes them in blocks (up to ``block`` per
statement, never more than the bucket holds) and hands them to its mails one by one: one
statement on the hot row per block, not per mail. Tokens a replica holds are spent later:
the lane's rate over time is unchanged, its burst can be one block per replica larger.
"""

from __future__ import annotations

import asyncio
import math
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
    granted: int  # whole tokens taken
    tokens: float  # left in the bucket afterwards
    wait_seconds: float  # until one token is there (0 when granted)


def refill(tokens: float, *, capacity: float, refill_per_second: float, elapsed: float) -> float:
    """Tokens after ``elapsed`` seconds; a clock seen going backwards adds nothing."""
    return min(capacity, tokens + max(0.0, elapsed) * refill_per_second)


def take_tokens(
    tokens: float, *, want: int, capacity: float, refill_per_second: float, elapsed: float
) -> TakeResult:
    """Up to ``want`` whole tokens, as many as the bucket holds; none: how long until ``want``
    are there (or a full bucket, if it holds fewer), so the next try takes them together."""
    available = refill(
        tokens, capacity=capacity, refill_per_second=refill_per_second, elapsed=elapsed
    )
    if available >= 1.0:
        granted = min(want, math.floor(available))
        return TakeResult(granted, available - granted, 0.0)
    target = max(1.0, min(float(want), math.floor(capacity)))
    return TakeResult(0, available, (target - available) / refill_per_second)


def take_token(
    tokens: float, *, capacity: float, refill_per_second: float, elapsed: float
) -> TakeResult:
    return take_tokens(
        tokens, want=1, capacity=capacity, refill_per_second=refill_per_second, elapsed=elapsed
    )


# take_tokens() in SQL. The CTE locks the row (FOR UPDATE waits for a concurrent taker and then
# sees its result); updated_at never moves backwards, so concurrent takers whose now() is a
# little older than the last update get no refill instead of a double one.
TAKE_TOKENS_SQL = """
WITH current AS (
    SELECT lane,
           refill_per_second,
           capacity,
           least(capacity,
                 tokens + greatest(0, extract(epoch FROM now() - updated_at)::double precision)
                          * refill_per_second) AS available
    FROM rate_buckets
    WHERE lane = %(lane)s
    FOR UPDATE
),
taken AS (
    SELECT lane, refill_per_second, available,
           CASE WHEN available >= 1 THEN least(%(want)s, floor(available)) ELSE 0 END AS granted,
           greatest(1, least(%(want)s, floor(capacity))) AS target
    FROM current
)
UPDATE rate_buckets AS bucket
SET tokens = taken.available - taken.granted,
    updated_at = greatest(bucket.updated_at, now())
FROM taken
WHERE bucket.lane = taken.lane
RETURNING taken.granted::integer AS granted,
          CASE WHEN taken.granted >= 1 THEN 0
               ELSE (taken.target - taken.available) / taken.refill_per_second END AS wait_seconds
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
    def __init__(
        self, pool: AsyncConnectionPool, rates: Mapping[str, LaneRate], block: int = 1
    ) -> None:
        self.pool = pool  # autocommit connections: each statement is its own transaction
        self.rates = dict(rates)
        self.block = block
        self._held = dict.fromkeys(rates, 0)  # tokens taken from the bucket, not yet used
        self._waiting = dict.fromkeys(rates, 0)  # mails of this process waiting for a token
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

    async def try_take(self, lane: str, want: int = 1) -> tuple[int, float]:
        """Up to ``want`` tokens from the shared bucket: how many, and the wait if none."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(TAKE_TOKENS_SQL, {"lane": lane, "want": want})
            row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"no rate bucket for lane {lane!r}; configure() was not run")
        return int(row[0]), float(row[1])

    async def acquire(self, lane: str) -> float:
        started = time.monotonic()
        self._waiting[lane] = self._waiting.get(lane, 0) + 1
        try:
            async with self._turns.setdefault(lane, asyncio.Lock()):
                while self._held.get(lane, 0) == 0:
                    # A block for the mails waiting here (a quiet lane takes one at a time)
                    want = min(self.block, self._waiting[lane])
                    granted, wait = await self.try_take(lane, want)
                    if granted:
                        self._held[lane] = granted
                        break
                    await asyncio.sleep(max(wait, MIN_WAIT_SECONDS))
                self._held[lane] -= 1
                return time.monotonic() - started
        finally:
            self._waiting[lane] -= 1


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

"""The shared token bucket against real Postgres: replicas together stay within the rate."""

from __future__ import annotations

import asyncio
import time

from psycopg_pool import AsyncConnectionPool

from services.mailer.rate_limit import LaneRate, PostgresRateLimiter
from tests.support.database import open_role_pool, role_pool
from tests.support.infra import Infra

RATE = 20.0
CAPACITY = 2.0


async def take_for(limiter: PostgresRateLimiter, seconds: float, grants: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while True:
        await limiter.acquire("batch")
        granted_at = time.monotonic()
        if granted_at > deadline:
            return
        grants.append(granted_at)


async def test_two_replicas_together_never_exceed_the_lane_rate(
    infra: Infra, mailer_schema: str, mailer_pool: AsyncConnectionPool
) -> None:
    # Given two mailer replicas, each with its own pool, sharing one lane of 20/s, burst 2
    rates = {"batch": LaneRate(refill_per_second=RATE, capacity=CAPACITY)}
    pools = [role_pool(infra, mailer_schema, max_size=2) for _ in range(2)]
    for pool in pools:
        await pool.open(wait=True)
    try:
        limiters = [PostgresRateLimiter(pool, rates) for pool in pools]
        for limiter in limiters:
            await limiter.configure()  # both start: the second must not refill the bucket
        # When both take tokens as fast as they can for 1.5 s, three acquirers each
        grants: list[float] = []
        started = time.monotonic()
        await asyncio.gather(*(take_for(lim, 1.5, grants) for lim in limiters for _ in range(3)))
        elapsed = time.monotonic() - started
    finally:
        for pool in pools:
            await pool.close()

    # Then all of them together got the burst plus the rate, not more (and not far less)
    assert len(grants) <= CAPACITY + RATE * elapsed + 1
    assert len(grants) >= RATE * 1.5 * 0.7
    # And no window of half a second held more than the burst plus half a second's worth
    grants.sort()
    for index, start in enumerate(grants):
        in_window = sum(1 for t in grants[index:] if t - start <= 0.5)
        assert in_window <= CAPACITY + RATE * 0.5 + 1


async def test_a_bucket_keeps_its_tokens_when_a_replica_reconfigures_it(
    mailer_pool: AsyncConnectionPool,
) -> None:
    # Given a lane whose bucket was emptied
    limiter = PostgresRateLimiter(
        mailer_pool, {"low": LaneRate(refill_per_second=0.01, capacity=3.0)}
    )
    await limiter.configure()
    taken = [await limiter.try_take("low") for _ in range(4)]
    # When another replica starts and configures the same lane
    await limiter.configure()
    # Then the bucket is still empty: a restart is no way around the limit
    granted, wait = await limiter.try_take("low")
    assert [g for g, _ in taken] == [1, 1, 1, 0]
    assert not granted and wait > 50


class CountingLimiter(PostgresRateLimiter):
    """Counts the statements that try the bucket."""

    tries = 0

    async def try_take(self, lane: str, want: int = 1) -> tuple[int, float]:
        self.tries += 1
        return await super().try_take(lane, want)


async def test_mails_waiting_in_one_process_try_the_bucket_one_at_a_time(
    infra: Infra, mailer_schema: str
) -> None:
    # Given one replica with 30 mails of one lane waiting at once on a bucket of 20/s, burst 1
    rates = {"batch": LaneRate(refill_per_second=RATE, capacity=1.0)}
    pool = role_pool(infra, mailer_schema, max_size=4)
    await pool.open(wait=True)
    try:
        limiter = CountingLimiter(pool, rates)
        await limiter.configure()
        # When every one of them acquires a token
        await asyncio.gather(*(limiter.acquire("batch") for _ in range(30)))
    finally:
        await pool.close()
    # Then the bucket row was tried about once per token (plus a retry when a sleep ends a
    # hair early), not once per waiting mail each time a token came due (hundreds)
    assert limiter.tries <= 30 * 2 + 5


async def test_tokens_taken_in_blocks_cost_one_statement_per_block_within_the_rate(
    infra: Infra, mailer_schema: str
) -> None:
    # Given a replica taking tokens in blocks of 10 from a lane of 20/s with a burst of 20
    rates = {"batch": LaneRate(refill_per_second=RATE, capacity=20.0)}
    async with open_role_pool(infra, mailer_schema, max_size=2) as pool:
        limiter = CountingLimiter(pool, rates, block=10)
        await limiter.configure()
        started = time.monotonic()
        # When 40 mails take a token each
        await asyncio.gather(*(limiter.acquire("batch") for _ in range(40)))
        elapsed = time.monotonic() - started
    # Then the bucket row was touched about once per block, and the lane's rate still held:
    # the burst (20), then 20 more at 20/s
    assert limiter.tries <= 40 // 10 + 6
    assert elapsed >= (40 - 20) / RATE - 0.1

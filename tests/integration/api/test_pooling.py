"""A busy pool makes a request wait; a pool that cannot reach the database answers at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.api.pooling import pooled_connection
from tests.support.infra import Infra

POOL_TIMEOUT = 0.3


async def test_a_request_waits_past_the_pool_timeout_while_the_others_are_served(
    infra: Infra,
) -> None:
    # Given a pool of one connection and eight requests ahead, each holding it for 0.1 s
    pool = AsyncConnectionPool(
        infra.database_url, min_size=1, max_size=1, timeout=POOL_TIMEOUT, open=False
    )
    await pool.open(wait=True)
    try:

        async def other_request() -> None:
            async with pooled_connection(pool, overload_wait=5) as conn:
                await conn.execute("SELECT pg_sleep(0.1)")

        async with pooled_connection(pool, overload_wait=5) as conn:
            await conn.execute("SELECT 1")  # the database has been answering
        others = [asyncio.create_task(other_request()) for _ in range(8)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        # When this request asks for a connection, with up to 5 s of patience under load
        async with pooled_connection(pool, overload_wait=5) as conn:
            row = await (await conn.execute("SELECT 1")).fetchone()
        waited = time.monotonic() - started
        await asyncio.gather(*others)
    finally:
        await pool.close()
    # Then it got one after the others, well past the pool's timeout, instead of a 503
    assert row == (1,)
    assert waited > 2 * POOL_TIMEOUT


async def test_a_pool_that_cannot_connect_fails_at_its_own_timeout() -> None:
    # Given a pool whose server does not answer (nothing listens on port 1)
    pool = AsyncConnectionPool(
        "host=127.0.0.1 port=1 connect_timeout=1",
        min_size=1,
        max_size=2,
        timeout=POOL_TIMEOUT,
        open=False,
        reconnect_timeout=60,
    )
    await pool.open(wait=False)
    try:
        started = time.monotonic()
        # When a request asks for a connection, with 30 s of patience under load
        with pytest.raises(PoolTimeout):
            async with pooled_connection(pool, overload_wait=30):
                pass
        # Then it fails at the pool's timeout: an outage is not load
        assert time.monotonic() - started < 5 * POOL_TIMEOUT
    finally:
        await pool.close()

"""Waiting for a database connection: briefly when the database is away, patiently when busy.

The pool's own timeout (``API_DB_POOL_TIMEOUT_SECONDS``, 2 s) is tuned for an outage: answer
503 quickly instead of holding the client. But under a burst every connection is simply busy
serving other requests, and a 503 then throws away a submission whose files were already read
and stored. So while connections keep coming back healthy (the database is answering
the others) a request waits its turn for up to ``API_DB_OVERLOAD_WAIT_SECONDS``; when none has
within the pool's timeout, the database is away: the pool's timeout applies, then 503.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# When each pool last had a connection handed back in working order.
_last_healthy_return: weakref.WeakKeyDictionary[AsyncConnectionPool, float] = (
    weakref.WeakKeyDictionary()
)


def database_answering(pool: AsyncConnectionPool, now: float) -> bool:
    returned = _last_healthy_return.get(pool)
    return returned is not None and now - returned < pool.timeout


@asynccontextmanager
async def pooled_connection(
    pool: AsyncConnectionPool, overload_wait: float
) -> AsyncIterator[AsyncConnection[Any]]:
    deadline = time.monotonic() + overload_wait
    while True:
        now = time.monotonic()
        # Decided before waiting, so a patient request keeps its place in the pool's queue.
        patience = deadline - now if database_answering(pool, now) else None
        try:
            connection = await pool.getconn(timeout=patience)
            break
        except PoolTimeout:
            now = time.monotonic()
            if now >= deadline or not database_answering(pool, now):
                raise
    try:
        yield connection
    finally:
        if not connection.broken:
            _last_healthy_return[pool] = time.monotonic()
        await pool.putconn(connection)

"""A pool that is never opened: resources built around it refuse any database use."""

from psycopg_pool import AsyncConnectionPool

from shared.db.pool import create_pool


def unopened_pool() -> AsyncConnectionPool:
    return create_pool("postgresql://nobody@127.0.0.1:1/none", name="unused")

"""A pool that is never opened: resources built around it refuse any database use."""

from psycopg_pool import AsyncConnectionPool

from shared.db.pool import create_pool


def unopened_pool() -> AsyncConnectionPool:
    return create_pool("postgresql://nobody@127.0.0.1:1/none", name="unused")


class EveryTokenCurrent:
    """``TokenVersions`` without a database: no password was ever reset (every token issued
    is of version 0)."""

    async def current(self, user_id: str) -> int | None:
        return 0

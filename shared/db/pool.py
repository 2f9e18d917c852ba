"""Connection pools, one per service role."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool


def role_conninfo(database_url: str, role: str, password: str) -> str:
    """The server and database of ``database_url``, logged in as ``role``."""
    return make_conninfo(database_url, user=role, password=password)


def database_name(database_url: str) -> str:
    return str(conninfo_to_dict(database_url).get("dbname", ""))


def create_pool(
    conninfo: str, *, name: str, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
) -> AsyncConnectionPool:
    """Not opened yet: ``await pool.open(wait=True)`` in the service's start-up.

    Connections are in autocommit: a transaction is always explicit
    (``async with conn.transaction()``), so nothing is left idle in a transaction.
    """
    return AsyncConnectionPool(
        conninfo,
        name=name,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        kwargs={"autocommit": True, "application_name": name},
    )

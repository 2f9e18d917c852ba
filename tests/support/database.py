"""Throw-away service schemas for tests: a role and a schema named alike, migrated like a
service's own, dropped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from tests.support.infra import Infra


def role_password(schema: str) -> str:
    return f"pw-{schema}"


@asynccontextmanager
async def service_schema(
    infra: Infra, name: str, packages: Sequence[str] = ()
) -> AsyncIterator[str]:
    """The shared messaging tables plus ``packages``' migrations, as role ``name``."""
    await migrate_service(infra.database_url, name, role_password(name), list(packages))
    try:
        yield name
    finally:
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
            await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def role_pool(
    infra: Infra, schema: str, min_size: int = 1, max_size: int = 8
) -> AsyncConnectionPool:
    """A pool logged in as the schema's role; not opened yet."""
    conninfo = role_conninfo(infra.database_url, schema, role_password(schema))
    return create_pool(conninfo, name=f"tests-{schema}", min_size=min_size, max_size=max_size)


@asynccontextmanager
async def open_role_pool(
    infra: Infra, schema: str, min_size: int = 1, max_size: int = 8
) -> AsyncIterator[AsyncConnectionPool]:
    pool = role_pool(infra, schema, min_size, max_size)
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from tests.support.infra import Infra


@pytest.fixture
async def payments_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A schema with the payments service's own migrations, owned by a role of the same name."""
    await migrate_service(
        infra.database_url, namespace, f"pw-{namespace}", ["services.payments.migrations"]
    )
    yield namespace
    async with await psycopg.AsyncConnection.connect(infra.database_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(namespace)))
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(namespace)))
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(namespace)))


@pytest.fixture
async def payments_pool(infra: Infra, payments_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    conninfo = role_conninfo(infra.database_url, payments_schema, f"pw-{payments_schema}")
    pool = create_pool(conninfo, name=f"tests-{payments_schema}", min_size=6, max_size=8)
    await pool.open(wait=True)
    yield pool
    await pool.close()

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.broker.rabbitmq import RabbitBroker
from shared.db.migrations import migrate_service
from shared.db.pool import create_pool, role_conninfo
from shared.topology import Exchanges
from tests.support.amqp import AmqpInspector
from tests.support.infra import Infra, infrastructure


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with infrastructure() as found:
        yield found


@pytest.fixture
def namespace() -> str:
    """A name no other test uses: its schema, role, exchanges and queues carry it."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def exchanges(namespace: str) -> Exchanges:
    return Exchanges.namespaced(namespace)


@pytest.fixture
async def rabbit(infra: Infra) -> AsyncIterator[RabbitBroker]:
    broker = await RabbitBroker.connect(infra.rabbitmq_url, connection_name="tests")
    yield broker
    await broker.close()


@pytest.fixture
async def amqp(infra: Infra) -> AsyncIterator[AmqpInspector]:
    inspector = await AmqpInspector.connect(infra.rabbitmq_url)
    yield inspector
    await inspector.delete_tracked()
    await inspector.close()


@pytest.fixture
async def schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A migrated schema owned by a role of the same name, dropped afterwards."""
    await migrate_service(infra.database_url, namespace, f"pw-{namespace}", [])
    yield namespace
    async with await psycopg.AsyncConnection.connect(infra.database_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(namespace)))
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(namespace)))
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(namespace)))


@pytest.fixture
async def pool(infra: Infra, schema: str) -> AsyncIterator[AsyncConnectionPool]:
    conninfo = role_conninfo(infra.database_url, schema, f"pw-{schema}")
    connection_pool = create_pool(conninfo, name=f"tests-{schema}", max_size=8)
    await connection_pool.open(wait=True)
    yield connection_pool
    await connection_pool.close()

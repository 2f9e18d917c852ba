from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool

from shared.broker.rabbitmq import RabbitBroker
from shared.topology import Exchanges
from tests.support.amqp import AmqpInspector
from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra, infrastructure
from tests.support.system import RunningSystem


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos runs restart the shared RabbitMQ and Postgres: they go last, so that no other
    test meets connections those restarts broke; the tests on a cluster of their own go after
    them, so that the cluster runs only while they do."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("cluster") is not None:
            return 2
        return 1 if item.get_closest_marker("chaos") is not None else 0

    items[:] = sorted(items, key=rank)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
async def system(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """The whole system as processes, shared by the end-to-end and browser tests."""
    running = RunningSystem(infra, tmp_path_factory.mktemp("system"), {})
    await running.start()
    yield running
    await running.stop()


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
    async with service_schema(infra, namespace) as name:
        yield name


@pytest.fixture
async def pool(infra: Infra, schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with open_role_pool(infra, schema) as connection_pool:
        yield connection_pool

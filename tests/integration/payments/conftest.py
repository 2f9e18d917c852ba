from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra


@pytest.fixture
async def payments_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A schema with the payments service's own migrations, owned by a role of the same name."""
    async with service_schema(infra, namespace, ["services.payments.migrations"]) as name:
        yield name


@pytest.fixture
async def payments_pool(infra: Infra, payments_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with open_role_pool(infra, payments_schema, min_size=6, max_size=8) as pool:
        yield pool

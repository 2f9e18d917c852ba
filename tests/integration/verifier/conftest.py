from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra


@pytest.fixture
async def verifier_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A schema with the verifier's own migrations, owned by a role of the same name."""
    async with service_schema(infra, namespace, ["services.verifier.migrations"]) as name:
        yield name


@pytest.fixture
async def verifier_pool(infra: Infra, verifier_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with open_role_pool(infra, verifier_schema, max_size=4) as pool:
        yield pool

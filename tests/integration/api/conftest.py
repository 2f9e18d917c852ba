"""The API in-process against the real Postgres, in a throw-away role and schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra
from tests.support.waiting import eventually

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin-test-password"


@pytest.fixture
async def api_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    """A role and schema named ``namespace`` with the shared and the API's migrations."""
    async with service_schema(infra, namespace, ["services.api.migrations"]) as name:
        yield name


@pytest.fixture
def api_settings(infra: Infra, api_schema: str, tmp_path: Path) -> ApiSettings:
    return ApiSettings(
        database_url=infra.database_url,
        rabbitmq_url=infra.rabbitmq_url,
        db_role=api_schema,
        api_db_password=f"pw-{api_schema}",
        db_pool_max=8,
        api_public_url="http://api.test",
        jwt_secret="integration-jwt-secret-at-least-32-bytes",
        webhook_secret="integration-webhook-secret",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        blob_dir=tmp_path / "blobs",
        blob_fsync=False,
        mail_history_schema=None,  # no mailer here; tests/integration/api/test_projector.py has one
    )


@pytest.fixture
async def app(api_settings: ApiSettings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (pool open, administrator seeded)."""
    application = create_app(api_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


@pytest.fixture
async def db(infra: Infra, api_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    """A separate pool, as the API's role, for the tests' own look into the tables."""
    async with open_role_pool(infra, api_schema, max_size=4) as pool:
        yield pool


async def scalar(pool: AsyncConnectionPool, query: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        row = await (await conn.execute(query, params)).fetchone()
        assert row is not None
        return row[0]


@dataclass(frozen=True)
class Applicant:
    email: str
    password: str
    headers: dict[str, str]


async def sign_up(
    client: httpx.AsyncClient, email: str, password: str = "s3cret-pass"
) -> Applicant:
    registered = await client.post("/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    return await log_in(client, email, password)


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> Applicant:
    token = await client.post("/auth/token", data={"username": email, "password": password})
    assert token.status_code == 200, token.text
    return Applicant(email, password, {"Authorization": f"Bearer {token.json()['access_token']}"})


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Applicant:
    return await sign_up(client, "alice@example.org")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Applicant:
    return await sign_up(client, "bob@example.org")


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on a free loopback port (its lifespan is the
    ``app`` fixture's): for tests that need real sockets, such as slow clients."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="uvicorn listening")
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    yield f"http://{host}:{port}"
    server.should_exit = True
    await serving

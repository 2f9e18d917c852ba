"""When Postgres is down or restarting the API answers 503 with Retry-After, at once."""

from __future__ import annotations

import httpx
import psycopg
import psycopg_pool
import pytest

from services.api.app import create_app
from services.api.settings import ApiSettings


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec"),
    ],
)
async def test_a_database_outage_is_a_quick_503(error: Exception) -> None:
    # Given the API, and a request whose database work fails because Postgres is unreachable
    app = create_app(ApiSettings())

    @app.get("/probe")
    async def probe() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        # When it is served
        response = await client.get("/probe")
    # Then the client is told to come back shortly, not that the server is broken
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "database" in response.json()["detail"]


def test_requests_wait_for_a_connection_only_briefly() -> None:
    # The pool's wait bounds how long a request hangs while Postgres restarts
    assert ApiSettings().api_db_pool_timeout_seconds <= 2.0

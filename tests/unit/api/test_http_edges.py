"""The HTTP layer's refusals, which never reach the database (in-process, no servers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.api.app import build_resources, create_app
from services.api.asyncapi import ASYNCAPI_PATH
from services.api.auth.passwords import Passwords
from services.api.auth.tokens import Principal, issue_token
from services.api.settings import ApiSettings
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields
from tests.unit.api.unopened import unopened_pool

SECRET = "unit-test-jwt-secret-at-least-32-bytes"
COMMITTED_ASYNCAPI = Path(__file__).resolve().parents[3] / "deploy" / "asyncapi.json"


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


@pytest.fixture
def app(tmp_path: Path, passwords: Passwords) -> Iterator[FastAPI]:
    """The app with resources that refuse any database use (the pool is never opened)."""
    # No rate limits: they count in the database (tests/security/test_floods.py)
    settings = ApiSettings(
        jwt_secret=SECRET, blob_dir=tmp_path / "blobs", blob_fsync=False, rate_limits=False
    )
    application = create_app(settings)
    resources = build_resources(settings, unopened_pool(), passwords)
    application.state.resources = resources
    yield application
    resources.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def bearer() -> dict[str, str]:
    alice = Principal("6b1e1b8e-6f7e-4f55-9a55-0f0f1c0e0a01", "alice@example.org", "applicant")
    token = issue_token(alice, SECRET, timedelta(minutes=5), datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


async def test_an_announced_oversized_body_gets_413_without_a_byte_read(app: FastAPI) -> None:
    # Given a request announcing 60 MiB, and a receive() that counts its calls
    received: list[object] = []
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(object())
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    headers = {**bearer(), "content-type": CONTENT_TYPE, "content-length": str(60 * 1024 * 1024)}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/applications",
        "raw_path": b"/applications",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("api.test", 80),
    }
    # When the app handles it
    await app(scope, receive, send)
    # Then it answers 413 with a JSON detail, and never asked for the body
    assert sent[0]["status"] == 413
    assert b'"detail"' in sent[1]["body"]
    assert received == []


async def test_a_file_over_10_mib_is_413(client: httpx.AsyncClient) -> None:
    body = multipart(valid_fields(), [FilePart("big.pdf", b"x" * (10 * 1024 * 1024 + 1))])
    response = await client.post(
        "/applications", content=body, headers={**bearer(), "content-type": CONTENT_TYPE}
    )
    assert response.status_code == 413
    assert "big.pdf" in response.json()["detail"]


@pytest.mark.parametrize(
    ("files", "status", "detail"),
    [
        ([FilePart("a.gif", b"GIF89a", "image/gif")], 415, "not accepted"),
        ([FilePart(f"f{i}.pdf", PDF) for i in range(6)], 422, "at most 5 files"),
        ([FilePart("empty.pdf", b"")], 422, "is empty"),
    ],
)
async def test_refusals_are_json(
    client: httpx.AsyncClient, files: list[FilePart], status: int, detail: str
) -> None:
    response = await client.post(
        "/applications",
        content=multipart(valid_fields(), files),
        headers={**bearer(), "content-type": CONTENT_TYPE},
    )
    assert response.status_code == status
    assert detail in response.json()["detail"]


async def test_submitting_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/applications", content=multipart(valid_fields()), headers={"content-type": CONTENT_TYPE}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "not authenticated"}


async def test_a_forged_token_is_refused(client: httpx.AsyncClient) -> None:
    forged = issue_token(
        Principal("u", "mallory@example.org", "admin"),
        "another-secret-that-is-long-enough-32b",
        timedelta(minutes=5),
        datetime.now(UTC),
    )
    response = await client.get("/applications", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


async def test_the_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "req-123"})
    made = await client.get("/healthz")
    assert given.status_code == 200
    assert given.json() == {"status": "ok"}
    assert given.headers["x-request-id"] == "req-123"
    assert len(made.headers["x-request-id"]) == 36


async def test_the_openapi_document_describes_the_multipart_form(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/applications"]["post"]["requestBody"]["content"]
    assert set(body["multipart/form-data"]["schema"]["properties"]) == {
        "program",
        "personal_statement",
        "files",
    }
    assert (await client.get("/docs")).status_code == 200


async def test_the_asyncapi_document_is_served_beside_the_openapi(
    client: httpx.AsyncClient,
) -> None:
    # Given no login at all, as for /openapi.json
    response = await client.get(ASYNCAPI_PATH)
    # Then the API serves the committed AsyncAPI document of the events
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(COMMITTED_ASYNCAPI.read_text())
    # and its OpenAPI description says where it is
    openapi = (await client.get("/openapi.json")).json()
    assert ASYNCAPI_PATH in openapi["info"]["description"]
    assert ASYNCAPI_PATH not in openapi["paths"]  # not an API operation, as /openapi.json

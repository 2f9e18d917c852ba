"""/admin is for administrators only, and refuses bad requests before any I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.api.admin.resources import AdminResources
from services.api.app import build_resources, create_app
from services.api.auth.passwords import Passwords
from services.api.auth.tokens import Principal, Role, issue_token
from services.api.settings import ApiSettings
from tests.unit.api.unopened import EveryTokenCurrent, unopened_pool

SECRET = "unit-test-jwt-secret-at-least-32-bytes"
NOWHERE = "http://127.0.0.1:1/"

ROUTES = [
    ("GET", "/admin/queues", None),
    ("GET", "/admin/outbox", None),
    ("GET", "/admin/dead-letters", None),
    ("GET", "/admin/dead-letters/verifier.documents/m1", None),
    (
        "POST",
        "/admin/dead-letters/replay",
        {"queue": "verifier.documents", "all": True, "dryRun": True},
    ),
    ("POST", "/admin/queues/mailer.medium/pause", None),
    ("POST", "/admin/queues/mailer.medium/resume", None),
    ("GET", "/admin/messages/m1/timeline", None),
]


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


@pytest.fixture
def app(tmp_path: Path, passwords: Passwords) -> Iterator[FastAPI]:
    """Resources that refuse any I/O: nothing here may reach a server."""
    settings = ApiSettings(
        jwt_secret=SECRET,
        blob_dir=tmp_path / "blobs",
        rabbitmq_management_url=NOWHERE,
        rabbitmq_url="amqp://guest:guest@127.0.0.1:1/",
    )
    application = create_app(settings)
    # The token version (a password reset revokes tokens) is the one read allowed before
    # these answers; without a database, every token is current.
    resources = replace(
        build_resources(settings, unopened_pool(), passwords), token_versions=EveryTokenCurrent()
    )
    application.state.resources = resources
    application.state.admin = AdminResources(settings)
    yield application
    resources.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        yield http


def bearer(role: Role) -> dict[str, str]:
    who = Principal("6b1e1b8e-6f7e-4f55-9a55-0f0f1c0e0a01", f"{role}@example.org", role)
    token = issue_token(who, SECRET, timedelta(minutes=5), datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_without_a_token_the_answer_is_401(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_an_applicant_token_gets_403(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await client.request(method, path, json=body, headers=bearer("applicant"))
    assert response.status_code == 403
    assert response.json() == {"detail": "administrators only"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/queues/no.such.queue/pause"),
        ("POST", "/admin/queues/no.such.queue/resume"),
        ("GET", "/admin/dead-letters/no.such.queue/m1"),
    ],
)
async def test_an_unknown_queue_is_404_for_an_admin(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=bearer("admin"))
    assert response.status_code == 404
    assert "no.such.queue" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "verifier.documents", "dryRun": True},  # no selector
        {"queue": "verifier.documents", "all": True, "fingerprint": "f", "dryRun": True},
        {"queue": "verifier.documents", "messageIds": [], "dryRun": True},
        {"queue": "verifier.documents", "all": True},  # dryRun must be said
        {"queue": "verifier.documents", "all": True, "dryRun": False, "ratePerSecond": 0},
    ],
)
async def test_a_replay_request_must_say_exactly_what_and_whether_for_real(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/admin/dead-letters/replay", json=body, headers=bearer("admin"))
    assert response.status_code == 422


async def test_an_admin_gets_503_when_the_management_api_is_unreachable(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/admin/queues", headers=bearer("admin"))
    assert response.status_code == 503
    assert "management" in response.json()["detail"]

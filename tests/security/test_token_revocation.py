"""Issue 14, item 12: a password reset revokes the access tokens issued before it, on every
route (the submission fast path included), even a token the API has already verified and
remembers."""

from __future__ import annotations

import json

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from shared.events.sealed import seal_context
from tests.integration.api.conftest import Applicant, log_in
from tests.support.events import DEVELOPMENT_SEALER
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields

pytestmark = pytest.mark.integration


async def reset_password(
    client: httpx.AsyncClient, db: AsyncConnectionPool, email: str, new_password: str
) -> None:
    """The whole reset, as the applicant does it: ask, open the mail's token, confirm."""
    assert (await client.post("/auth/password-reset", json={"email": email})).status_code == 202
    async with db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT body FROM outbox WHERE type = 'auth.password_reset_requested'"
                " ORDER BY id DESC LIMIT 1"
            )
        ).fetchone()
    assert row is not None
    event = json.loads(row[0])
    token = DEVELOPMENT_SEALER.unseal(
        event["payload"]["sealed_token"], seal_context(event["type"], email)
    )
    confirmed = await client.post(
        "/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert confirmed.status_code == 204


async def submit(client: httpx.AsyncClient, who: Applicant) -> httpx.Response:
    return await client.post(
        "/applications",
        content=multipart(valid_fields(), [FilePart("cv.pdf", PDF)]),
        headers={**who.headers, "content-type": CONTENT_TYPE},
    )


async def test_a_password_reset_revokes_the_tokens_issued_before_it(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # Given a token that has been used (verified and remembered by the API) on every kind
    # of route: the submission fast path, a read, and a route behind FastAPI's dependencies
    assert (await submit(client, alice)).status_code == 202
    assert (await client.get("/applications", headers=alice.headers)).status_code == 200
    # When the password is reset (someone else had it, say)
    await reset_password(client, db, alice.email, "after-the-reset")
    # Then that token opens nothing any more, and nothing is written with it
    refused = [
        await submit(client, alice),
        await client.get("/applications", headers=alice.headers),
        await client.post("/auth/otp", headers=alice.headers),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert all("log in again" in r.json()["detail"] for r in refused)
    assert all(r.headers["www-authenticate"] == "Bearer" for r in refused)
    async with db.connection() as conn:
        count = await (await conn.execute("SELECT count(*) FROM applications")).fetchone()
    assert count == (1,)
    # And a token from logging in with the new password works everywhere
    renewed = await log_in(client, alice.email, "after-the-reset")
    assert (await submit(client, renewed)).status_code == 202
    listed = await client.get("/applications", headers=renewed.headers)
    assert listed.status_code == 200 and len(listed.json()) == 2


async def test_a_reset_of_one_account_leaves_other_accounts_tokens_alone(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant, db: AsyncConnectionPool
) -> None:
    await reset_password(client, db, alice.email, "after-the-reset")
    assert (await submit(client, bob)).status_code == 202
    assert (await client.get("/applications", headers=bob.headers)).status_code == 200

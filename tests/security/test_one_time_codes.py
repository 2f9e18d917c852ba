"""Issue 14, item 12: one-time codes were mailed but could never be used. A code now verifies
the account's e-mail address: once, before it expires, in a bounded number of tries, and
the tries of one user are rate-limited (429) on every replica."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api.app import create_app
from services.api.settings import ApiSettings
from shared.events.sealed import seal_context
from tests.integration.api.conftest import Applicant, sign_up
from tests.support.events import DEVELOPMENT_SEALER

pytestmark = pytest.mark.integration


async def ask_for_code(client: httpx.AsyncClient, db: AsyncConnectionPool, who: Applicant) -> str:
    """Ask for a code and read it as the mailer would (from the newest sealed event)."""
    assert (await client.post("/auth/otp", headers=who.headers)).status_code == 202
    async with db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT body FROM outbox WHERE type = 'auth.otp_requested' ORDER BY id DESC LIMIT 1"
            )
        ).fetchone()
    assert row is not None
    event = json.loads(row[0])
    return DEVELOPMENT_SEALER.unseal(
        event["payload"]["sealed_code"], seal_context(event["type"], who.email)
    )


async def verify(client: httpx.AsyncClient, who: Applicant, code: str) -> httpx.Response:
    return await client.post("/auth/otp/verify", json={"code": code}, headers=who.headers)


def another_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def email_verified(client: httpx.AsyncClient, who: Applicant) -> bool:
    me = await client.get("/auth/me", headers=who.headers)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == who.email
    return bool(me.json()["email_verified"])


async def test_the_mailed_code_verifies_the_address_once(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant, db: AsyncConnectionPool
) -> None:
    # Given an applicant whose address is not verified, and the code mailed to her
    assert not await email_verified(client, alice)
    code = await ask_for_code(client, db, alice)
    # When another applicant tries it, it is not his code
    assert (await verify(client, bob, code)).status_code == 400
    # When she sends it back
    verified = await verify(client, alice, code)
    # Then her address is verified
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    assert await email_verified(client, alice)
    assert not await email_verified(client, bob)
    # And the code cannot be used again
    again = await verify(client, alice, code)
    assert again.status_code == 400
    assert "ask for a new code" in again.json()["detail"]


async def test_a_code_is_spent_after_its_wrong_tries(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    code = await ask_for_code(client, db, alice)
    wrong = [
        await verify(client, alice, another_code(code))
        for _ in range(api_settings.otp_max_attempts)
    ]
    assert [r.status_code for r in wrong] == [400] * api_settings.otp_max_attempts
    assert "last try" in wrong[-1].json()["detail"]
    # the right code comes too late: the code is spent
    assert (await verify(client, alice, code)).status_code == 400
    assert not await email_verified(client, alice)
    # a new code works
    assert (await verify(client, alice, await ask_for_code(client, db, alice))).status_code == 200


async def test_concurrent_wrong_tries_are_each_counted(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    code = await ask_for_code(client, db, alice)
    tries = 3 * api_settings.otp_max_attempts
    answers = await asyncio.gather(
        *(verify(client, alice, another_code(code)) for _ in range(tries))
    )
    assert all(a.status_code == 400 for a in answers)
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT attempts FROM otp_codes")).fetchone()
    assert row == (api_settings.otp_max_attempts,)
    assert (await verify(client, alice, code)).status_code == 400


async def test_an_expired_or_replaced_code_is_refused(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    expired = await ask_for_code(client, db, alice)
    async with db.connection() as conn:
        await conn.execute("UPDATE otp_codes SET expires_at = now() - interval '1 second'")
    assert (await verify(client, alice, expired)).status_code == 400
    replaced = await ask_for_code(client, db, alice)
    newest = await ask_for_code(client, db, alice)
    if replaced != newest:  # one in a million they are the same six digits
        assert (await verify(client, alice, replaced)).status_code == 400
    assert (await verify(client, alice, newest)).status_code == 200


@pytest.fixture
async def few_tries(api_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings.model_copy(update={"otp_verifications_per_user_per_hour": 3})
    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def test_tries_past_the_rate_limit_are_429_with_retry_after(
    few_tries: httpx.AsyncClient,
) -> None:
    carol = await sign_up(few_tries, "carol@example.org")
    answers = [await verify(few_tries, carol, "000000") for _ in range(5)]
    assert [a.status_code for a in answers] == [400, 400, 400, 429, 429]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 3600
    assert "too many one-time code tries" in answers[-1].json()["detail"]


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", " 123456", ""])
async def test_a_code_that_is_not_six_digits_is_422(
    client: httpx.AsyncClient, alice: Applicant, code: str
) -> None:
    assert (await verify(client, alice, code)).status_code == 422


async def test_verifying_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/auth/otp/verify", json={"code": "123456"})).status_code == 401

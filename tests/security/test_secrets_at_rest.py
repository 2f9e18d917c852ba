"""Issue 14, item 6: no secret at rest in clear.

A reset token or a one-time code goes to the mailer in an event, and events are kept where many
read them: the outbox (7 days; the relay and the operators' role read it), the broker, the
dead-letter queues and the admin API's dead-letter viewer. The test reads the outbox rows as
they are stored: the token and the code are not in them, only sealed for the mailer, and what
the mailer opens is the secret whose hash the API keeps.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.auth.codes import hash_otp_code, hash_reset_token
from services.api.settings import ApiSettings
from shared.events.sealed import SealBroken, SecretSealer, seal_context
from tests.integration.api.conftest import Applicant, scalar
from tests.support.events import DEVELOPMENT_SEALER

pytestmark = pytest.mark.integration


async def outbox_rows(db: AsyncConnectionPool, event_type: str) -> list[str]:
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT body FROM outbox WHERE type = %s ORDER BY id", (event_type,)
        )
        return [str(body) for (body,) in await cursor.fetchall()]


async def test_reset_tokens_and_one_time_codes_are_not_stored_in_clear(
    client: httpx.AsyncClient,
    alice: Applicant,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    # Given a password reset and a one-time code asked for
    assert (
        await client.post("/auth/password-reset", json={"email": alice.email})
    ).status_code == 202
    assert (await client.post("/auth/otp", headers=alice.headers)).status_code == 202

    # When the outbox rows are read as stored
    (reset_body,) = await outbox_rows(db, "auth.password_reset_requested")
    (otp_body,) = await outbox_rows(db, "auth.otp_requested")

    # Then the token is not there, only sealed; the mailer's key opens it to the very token
    # whose hash the API keeps
    reset = json.loads(reset_body)["payload"]
    assert set(reset) == {"email", "sealed_token"}
    token = DEVELOPMENT_SEALER.unseal(
        reset["sealed_token"], seal_context("auth.password_reset_requested", alice.email)
    )
    assert token not in reset_body
    stored = "SELECT count(*) FROM password_reset_tokens WHERE token_hash = %s"
    assert await scalar(db, stored, hash_reset_token(token)) == 1

    # And the code is not there either
    otp = json.loads(otp_body)["payload"]
    assert set(otp) == {"email", "sealed_code"}
    code = DEVELOPMENT_SEALER.unseal(
        otp["sealed_code"], seal_context("auth.otp_requested", alice.email)
    )
    assert re.fullmatch(r"[0-9]{6}", code) and code not in json.dumps(otp)
    user_id = await scalar(db, "SELECT id::text FROM users WHERE email = %s", alice.email)
    secret = api_settings.jwt_secret.get_secret_value()
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM otp_codes WHERE code_hash = %s",
            hash_otp_code(secret, user_id, code),
        )
        == 1
    )


def test_a_sealed_secret_opens_only_with_the_key_and_in_its_own_event() -> None:
    sealed = DEVELOPMENT_SEALER.seal("123456", seal_context("auth.otp_requested", "a@example.org"))
    assert DEVELOPMENT_SEALER.unseal(sealed, seal_context("auth.otp_requested", "a@example.org"))
    # moved into another recipient's event: refused
    with pytest.raises(SealBroken):
        DEVELOPMENT_SEALER.unseal(sealed, seal_context("auth.otp_requested", "b@example.org"))
    # another key: refused
    with pytest.raises(SealBroken):
        SecretSealer(b"k" * 32).unseal(sealed, seal_context("auth.otp_requested", "a@example.org"))
    # altered: refused
    with pytest.raises(SealBroken):
        DEVELOPMENT_SEALER.unseal(
            sealed[:-2] + "AA", seal_context("auth.otp_requested", "a@example.org")
        )

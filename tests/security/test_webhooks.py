"""Forged, stale and replayed provider webhooks: 401, and no event reaches the outbox."""

from __future__ import annotations

import time

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from shared.signing import SIGNATURE_HEADER, signature_header
from tests.integration.api.conftest import Applicant, scalar
from tests.integration.api.test_auth_and_webhooks import application_of, webhook_body

pytestmark = pytest.mark.integration

EVENT = "payment.webhook_received"


async def events(db: AsyncConnectionPool) -> int:
    return int(await scalar(db, "SELECT count(*) FROM outbox WHERE type = %s", EVENT))


async def post(client: httpx.AsyncClient, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return await client.post("/webhooks/payments", content=body, headers=headers)


async def test_forged_and_stale_webhooks_are_401_and_write_nothing(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # Given a real application and the genuine secret
    body = webhook_body(await application_of(client, alice))
    secret = api_settings.webhook_secret.get_secret_value()
    now = int(time.time())
    good = signature_header(secret, body, now)
    attempts = {
        "no signature": None,
        "empty signature": "",
        "garbage signature": "not a signature",
        "signed with another secret": signature_header("guessed-secret", body, now),
        "an hour old": signature_header(secret, body, now - 3600),
        "from the future": signature_header(secret, body, now + 3600),
        "signature of another body": signature_header(secret, body + b" ", now),
        "timestamp changed after signing": good.replace(f"t={now}", f"t={now + 1}"),
    }
    for kind, signature in attempts.items():
        # When a webhook arrives signed wrongly
        response = await post(client, body, signature)
        # Then it is refused
        assert response.status_code == 401, (kind, response.text)
    # And nothing was handed on
    assert await events(db) == 0
    assert await scalar(db, "SELECT count(*) FROM webhook_events") == 0


async def test_a_replayed_webhook_is_401_and_handed_on_once(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    body = webhook_body(await application_of(client, alice), event_id="evt_replay")
    secret = api_settings.webhook_secret.get_secret_value()
    signature = signature_header(secret, body, int(time.time()))
    assert (await post(client, body, signature)).status_code == 202
    # When the very same request is sent again, and again freshly signed
    again = await post(client, body, signature)
    resigned = await post(client, body, signature_header(secret, body, int(time.time()) + 1))
    # Then both are refused, and there is still exactly one event
    assert again.status_code == resigned.status_code == 401
    assert await events(db) == 1

"""Accounts, password reset, one-time codes, the provider's webhook and readiness."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.mailer.catalog import password_reset_url
from shared.events.sealed import seal_context
from shared.signing import SIGNATURE_HEADER, signature_header
from tests.integration.api.conftest import Applicant, log_in, scalar
from tests.support.events import DEVELOPMENT_SEALER
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields


async def outbox_events(db: AsyncConnectionPool, event_type: str) -> list[dict[str, object]]:
    async with db.connection() as conn:
        rows = await (
            await conn.execute("SELECT body FROM outbox WHERE type = %s ORDER BY id", (event_type,))
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


async def test_registering_twice_with_one_address_is_409(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/auth/register", json={"email": "Carol@Example.org", "password": "long-enough"}
    )
    again = await client.post(
        "/auth/register", json={"email": "carol@example.org", "password": "another-one"}
    )
    assert first.status_code == 201
    assert first.json()["email"] == "carol@example.org"
    assert first.json()["role"] == "applicant"
    assert again.status_code == 409


async def test_a_short_password_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "d@example.org", "password": "short"}
    )
    assert response.status_code == 422


async def test_a_wrong_password_gets_no_token(client: httpx.AsyncClient, alice: Applicant) -> None:
    wrong = await client.post(
        "/auth/token", data={"username": alice.email, "password": "not-her-password"}
    )
    unknown = await client.post(
        "/auth/token", data={"username": "nobody@example.org", "password": "whatever1"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_password_reset_round_trip(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    # Given a reset asked for an existing and an unknown address
    known = await client.post("/auth/password-reset", json={"email": alice.email})
    unknown = await client.post("/auth/password-reset", json={"email": "ghost@example.org"})
    # Then both answer the same, and only the existing account gets a mail event
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    [event] = await outbox_events(db, "auth.password_reset_requested")
    payload = event["payload"]
    assert isinstance(payload, dict)
    assert payload["email"] == alice.email
    # (sealed for the mailer: tests/security/test_secrets_at_rest.py)
    token = DEVELOPMENT_SEALER.unseal(
        str(payload["sealed_token"]), seal_context(str(event["type"]), alice.email)
    )
    # And only a hash of the token is stored
    assert (
        await scalar(db, "SELECT count(*) FROM password_reset_tokens WHERE token_hash = %s", token)
        == 0
    )
    # When the token is used
    confirmed = await client.post(
        "/auth/password-reset/confirm", json={"token": token, "new_password": "brand-new-pass"}
    )
    assert confirmed.status_code == 204
    # Then the new password works, the old one does not, and the token is spent
    await log_in(client, alice.email, "brand-new-pass")
    old = await client.post(
        "/auth/token", data={"username": alice.email, "password": alice.password}
    )
    assert old.status_code == 401
    reused = await client.post(
        "/auth/password-reset/confirm", json={"token": token, "new_password": "third-password"}
    )
    assert reused.status_code == 400


async def test_a_one_time_code_is_stored_hashed_and_mailed(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    response = await client.post("/auth/otp", headers=alice.headers)
    assert response.status_code == 202
    [event] = await outbox_events(db, "auth.otp_requested")
    payload = event["payload"]
    assert isinstance(payload, dict)
    assert payload["email"] == alice.email
    code = DEVELOPMENT_SEALER.unseal(
        str(payload["sealed_code"]), seal_context(str(event["type"]), alice.email)
    )
    assert len(code) == 6 and code.isdigit()
    stored = await scalar(db, "SELECT code_hash FROM otp_codes")
    assert code not in stored
    assert (await client.post("/auth/otp")).status_code == 401


async def application_of(client: httpx.AsyncClient, who: Applicant) -> str:
    response = await client.post(
        "/applications",
        content=multipart(valid_fields(), [FilePart("cv.pdf", PDF)]),
        headers={**who.headers, "content-type": CONTENT_TYPE, "X-Request-ID": "req-webhook"},
    )
    assert response.status_code == 202
    return str(response.json()["applicationId"])


def webhook_body(application_id: str, event_id: str = "evt_1", status: str = "paid") -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "payment_id": "pay_1",
            "application_id": application_id,
            "status": status,
            "failure_reason": None,
        }
    ).encode()


async def send_webhook(
    client: httpx.AsyncClient, body: bytes, secret: str, timestamp: int | None = None
) -> httpx.Response:
    signed = signature_header(secret, body, int(time.time()) if timestamp is None else timestamp)
    return await client.post(
        "/webhooks/payments",
        content=body,
        headers={SIGNATURE_HEADER: signed, "content-type": "application/json"},
    )


async def test_a_signed_webhook_becomes_an_outbox_event_once(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # Given an application and the provider's signed notification
    application_id = await application_of(client, alice)
    body = webhook_body(application_id)
    secret = api_settings.webhook_secret.get_secret_value()
    # When it arrives
    accepted = await send_webhook(client, body, secret)
    # Then it is accepted and handed on with the applicant's address and the trace id
    assert accepted.status_code == 202
    [event] = await outbox_events(db, "payment.webhook_received")
    assert event["payload"] == {
        "provider_event_id": "evt_1",
        "payment_id": "pay_1",
        "application_id": application_id,
        "applicant_email": alice.email,
        "status": "paid",
        "failure_reason": None,
    }
    assert event["correlation_id"] == "req-webhook"
    # When the same event is replayed (even freshly signed)
    replayed = await send_webhook(client, body, secret)
    # Then it is acknowledged and nothing more is written
    assert replayed.status_code == 200  # acknowledged, so the provider stops retrying
    assert replayed.json() == {"detail": "already received"}
    assert len(await outbox_events(db, "payment.webhook_received")) == 1


async def test_unsigned_forged_or_stale_webhooks_are_401(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    application_id = await application_of(client, alice)
    body = webhook_body(application_id)
    secret = api_settings.webhook_secret.get_secret_value()
    unsigned = await client.post("/webhooks/payments", content=body)
    forged = await send_webhook(client, body, "not-the-secret")
    stale = await send_webhook(client, body, secret, timestamp=int(time.time()) - 3600)
    tampered_signature = signature_header(secret, body, int(time.time()))
    tampered = await client.post(
        "/webhooks/payments",
        content=body.replace(b"paid", b"fail"),
        headers={SIGNATURE_HEADER: tampered_signature},
    )
    assert [r.status_code for r in (unsigned, forged, stale, tampered)] == [401, 401, 401, 401]
    assert "tolerance" in stale.json()["detail"]
    assert await outbox_events(db, "payment.webhook_received") == []
    # The refused attempts did not burn the event id: the genuine one still goes through
    assert (await send_webhook(client, body, secret)).status_code == 202


async def test_a_webhook_for_an_unknown_application_is_404(
    client: httpx.AsyncClient, api_settings: ApiSettings, db: AsyncConnectionPool
) -> None:
    secret = api_settings.webhook_secret.get_secret_value()
    response = await send_webhook(client, webhook_body(str(uuid.uuid4())), secret)
    assert response.status_code == 404
    assert await scalar(db, "SELECT count(*) FROM webhook_events") == 0


async def test_without_the_broker_the_api_stays_ready_and_says_so(
    api_settings: ApiSettings,
) -> None:
    """Accepting needs Postgres only (the relay publishes later): a readiness probe that
    failed with RabbitMQ would take the API out of service in a broker outage."""
    # Given an API whose broker address answers nothing
    unreachable = api_settings.model_copy(
        update={"rabbitmq_url": SecretStr("amqp://guest:guest@127.0.0.1:1/")}
    )
    app: FastAPI = create_app(unreachable)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/readyz")
    # Then it is still ready, and names what is unreachable
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "rabbitmq": "unreachable"}
    assert "rabbitmq" in response.json()["detail"]


async def test_without_the_database_the_api_is_not_ready(api_settings: ApiSettings) -> None:
    app: FastAPI = create_app(api_settings)
    async with app.router.lifespan_context(app):
        # Given an API that has lost its database
        await app.state.resources.pool.close()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/readyz")
    # Then it is not ready, and says why
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"
    assert "database" in response.json()["detail"]


async def test_the_reset_emails_link_opens_a_page_that_resets_the_password(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool
) -> None:
    """issue 14, item 12: a link in an e-mail is opened with GET; it used to answer 405."""
    await client.post("/auth/password-reset", json={"email": alice.email})
    [event] = await outbox_events(db, "auth.password_reset_requested")
    payload = event["payload"]
    assert isinstance(payload, dict)
    token = DEVELOPMENT_SEALER.unseal(
        str(payload["sealed_token"]), seal_context(str(event["type"]), alice.email)
    )
    # Given the link the mailer puts in the e-mail
    link = urlsplit(password_reset_url(str(client.base_url), token))
    # When it is clicked (GET)
    page = await client.get(f"{link.path}?{link.query}")
    # Then a page asks for the new password, without the token in its markup, uncached
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'type="password"' in page.text and token not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    # And what its script posts (the token of its own address, to its own path) resets it
    posted = await client.post(
        link.path, json={"token": parse_qs(link.query)["token"][0], "new_password": "clicked-pass"}
    )
    assert posted.status_code == 204
    await log_in(client, alice.email, "clicked-pass")

"""Authentication and authorisation refusals, and slowing down password guessing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.api import app as app_module
from services.api.app import create_app
from services.api.auth.tokens import Principal, issue_token
from services.api.settings import ApiSettings
from tests.integration.api.conftest import Applicant, scalar, sign_up
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields

pytestmark = pytest.mark.integration

ADMIN_ROUTES = [
    ("GET", "/admin/queues"),
    ("GET", "/admin/outbox"),
    ("GET", "/admin/dead-letters"),
    ("POST", "/admin/queues/verifier.documents/pause"),
    ("POST", "/admin/queues/verifier.documents/resume"),
    ("GET", "/admin/dead-letters/verifier.documents/some-message"),
    ("GET", "/admin/messages/some-message/timeline"),
]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(who: Applicant) -> dict[str, object]:
    token = who.headers["Authorization"].removeprefix("Bearer ")
    return dict(jwt.decode(token, options={"verify_signature": False}))


def bad_tokens(who: Applicant, secret: str) -> dict[str, str]:
    """Every way a bearer token can be wrong, built from a real applicant's claims."""
    claims = claims_of(who)
    principal = Principal(str(claims["sub"]), str(claims["email"]), "applicant")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=2)
    as_admin = {**claims, "role": "admin"}
    return {
        "malformed": "not-a-jwt",
        "three garbage parts": "abc.def.ghi",
        "expired": issue_token(principal, secret, timedelta(minutes=60), an_hour_ago),
        "wrongly signed": issue_token(
            principal,
            "another-secret-of-32-bytes-or-more!",
            timedelta(minutes=5),
            datetime.now(UTC),
        ),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg none, role admin": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(as_admin)}.",
        "signature of another token": (
            f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(as_admin)}."
            + who.headers["Authorization"].rsplit(".", 1)[1]
        ),
        "HS512 with the right secret": jwt.encode(claims, secret, algorithm="HS512"),
        "no expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256"
        ),
    }


async def test_requests_without_a_token_are_401(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/applications"), ("POST", "/auth/otp"), *ADMIN_ROUTES]:
        response = await client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_every_kind_of_bad_token_is_401(
    client: httpx.AsyncClient, alice: Applicant, api_settings: ApiSettings
) -> None:
    # Given a genuine token that works
    assert (await client.get("/applications", headers=alice.headers)).status_code == 200
    secret = api_settings.jwt_secret.get_secret_value()
    for kind, token in bad_tokens(alice, secret).items():
        for scheme in ("Bearer", "bearer"):
            # When a request carries a bad one
            response = await client.get(
                "/applications", headers={"Authorization": f"{scheme} {token}"}
            )
            # Then it is refused as unauthenticated
            assert response.status_code == 401, (kind, response.text)
    not_bearer = await client.get("/applications", headers={"Authorization": "Basic YTpi"})
    assert not_bearer.status_code == 401


async def test_an_applicant_on_admin_routes_is_403(
    client: httpx.AsyncClient, alice: Applicant
) -> None:
    for method, path in ADMIN_ROUTES:
        response = await client.request(method, path, headers=alice.headers)
        assert response.status_code == 403, (method, path, response.text)
    replay = await client.post(
        "/admin/dead-letters/replay",
        headers=alice.headers,
        json={"queue": "verifier.documents", "all": True, "dryRun": True},
    )
    assert replay.status_code == 403


async def test_applicant_a_cannot_see_bs_application(
    client: httpx.AsyncClient, alice: Applicant, bob: Applicant
) -> None:
    # Given Bob's application
    submitted = await client.post(
        "/applications",
        content=multipart(valid_fields(), [FilePart("cv.pdf", PDF)]),
        headers={**bob.headers, "content-type": CONTENT_TYPE},
    )
    assert submitted.status_code == 202
    application_id = submitted.json()["applicationId"]
    for path in [
        f"/applications/{application_id}",
        f"/applications/{application_id}/status",
        f"/payments/checkout/{application_id}",
    ]:
        # When Alice asks for it, Then it does not exist for her (not even a 403 to confirm it)
        assert (await client.get(path, headers=alice.headers)).status_code == 404, path
        assert (await client.get(path, headers=bob.headers)).status_code != 404, path
    mine = await client.get("/applications", headers=alice.headers)
    assert application_id not in mine.text


# --- brute force on /auth/token --------------------------------------------------------------


def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def test_the_sixth_wrong_password_is_429_and_others_still_log_in(
    app: FastAPI, client: httpx.AsyncClient, alice: Applicant, bob: Applicant
) -> None:
    async with (
        from_address(app, "203.0.113.7") as attacker,
        from_address(app, "198.51.100.20") as owner,
    ):
        # Given five wrong passwords for Alice from one address
        wrong = [await attempt(attacker, alice.email, f"guess-{n}") for n in range(5)]
        assert [r.status_code for r in wrong] == [401] * 5
        # When a sixth comes, even with the right password
        sixth = await attempt(attacker, alice.email, "guess-6")
        right = await attempt(attacker, alice.email, alice.password)
        # Then both are refused with 429 and a Retry-After within the window
        assert sixth.status_code == right.status_code == 429
        assert 1 <= int(sixth.headers["retry-after"]) <= 60
        # And Bob, from the very same address, still logs in
        assert (await attempt(attacker, bob.email, bob.password)).status_code == 200
        # And Alice herself, from her own address, still logs in
        assert (await attempt(owner, alice.email, alice.password)).status_code == 200


async def test_a_successful_login_clears_the_failures(
    app: FastAPI, alice: Applicant, db: AsyncConnectionPool
) -> None:
    async with from_address(app, "203.0.113.8") as forgetful:
        for _ in range(4):
            assert (await attempt(forgetful, alice.email, "typo")).status_code == 401
        assert (await attempt(forgetful, alice.email, alice.password)).status_code == 200
        assert await scalar(db, "SELECT count(*) FROM login_failures") == 0
        # Then four more typos are still only 401s, not a lock-out
        for _ in range(4):
            assert (await attempt(forgetful, alice.email, "typo")).status_code == 401
    # And no address or e-mail is kept in clear
    async with db.connection() as conn:
        rows = await (await conn.execute("SELECT key FROM login_failures")).fetchall()
    assert rows and all(alice.email not in key and "203.0.113.8" not in key for (key,) in rows)


@pytest.fixture
async def short_window_app(api_settings: ApiSettings) -> AsyncIterator[FastAPI]:
    settings = api_settings.model_copy(
        update={"login_max_failures": 2, "login_failure_window_seconds": 2.0}
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_the_block_ends_with_its_window(short_window_app: FastAPI) -> None:
    async with from_address(short_window_app, "203.0.113.9") as client:
        applicant = await sign_up(client, "carol@example.org")
        for _ in range(2):
            assert (await attempt(client, applicant.email, "wrong")).status_code == 401
        blocked = await attempt(client, applicant.email, applicant.password)
        assert blocked.status_code == 429
        started = time.monotonic()
        while (await attempt(client, applicant.email, applicant.password)).status_code == 429:
            assert time.monotonic() - started < 5, "the block outlived its window"
            await asyncio.sleep(0.2)


async def test_unknown_and_nul_addresses_are_counted_without_a_500(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with from_address(app, "203.0.113.10") as attacker:
        statuses = [
            (await attempt(attacker, "nobody\x00@example.org", "x")).status_code for _ in range(6)
        ]
    assert statuses == [401] * 5 + [429]


# --- issue 14, item 5: atomic counting, the client's address behind the proxy ---------------


async def test_concurrent_wrong_passwords_are_counted_one_by_one(
    app: FastAPI, alice: Applicant, api_settings: ApiSettings
) -> None:
    # When twenty guesses for Alice arrive at once from one address
    async with from_address(app, "203.0.113.30") as attacker:
        answers = await asyncio.gather(
            *(attempt(attacker, alice.email, f"guess-{n}") for n in range(20))
        )
    codes = sorted(a.status_code for a in answers)
    # Then only the allowed number had their password checked; the others were refused
    allowed = api_settings.login_max_failures
    assert codes == [401] * allowed + [429] * (20 - allowed)


def behind_proxy(app: FastAPI, proxy: str, trusted: str) -> httpx.AsyncClient:
    """As uvicorn serves the API (``services.api.app.main``): its proxy-headers middleware
    with ``FORWARDED_ALLOW_IPS``; the connection comes from ``proxy``."""
    wrapped = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=wrapped, client=(proxy, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def test_behind_the_trusted_proxy_five_wrong_passwords_lock_out_only_the_guesser(
    app: FastAPI, alice: Applicant, api_settings: ApiSettings
) -> None:
    nginx = "10.89.0.5"
    api_settings.forwarded_allow_ips = "10.89.0.0/24"  # nginx's network, as compose would set it
    async with behind_proxy(app, nginx, api_settings.forwarded_allow_ips) as proxy:
        attacker = {"X-Forwarded-For": "203.0.113.40"}
        owner = {"X-Forwarded-For": "198.51.100.41"}
        for n in range(5):
            wrong = await proxy.post(
                "/auth/token",
                data={"username": alice.email, "password": f"guess-{n}"},
                headers=attacker,
            )
            assert wrong.status_code == 401
        blocked = await proxy.post(
            "/auth/token", data={"username": alice.email, "password": "x"}, headers=attacker
        )
        assert blocked.status_code == 429
        # Then Alice, through the same proxy, still logs in
        mine = await proxy.post(
            "/auth/token",
            data={"username": alice.email, "password": alice.password},
            headers=owner,
        )
        assert mine.status_code == 200


def test_the_api_server_trusts_the_configured_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(app_module.uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(app_module, "prepare_multiprocess_metrics", lambda workers: None)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.89.0.0/24")
    app_module.main()
    assert seen["forwarded_allow_ips"] == "10.89.0.0/24" and seen["proxy_headers"] is True

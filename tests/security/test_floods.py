"""Issue 14, item 4: floods.

Against the API in-process (real Postgres): each flood is answered 429 with ``Retry-After``
once past its limit, and the count is held in Postgres, so a second replica on the same
database refuses too. Argon2 runs at most ``password_hash_concurrency`` hashes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from devtools.broker_users import Management, provision
from services.api.app import create_app
from services.api.auth.passwords import HashingBusy, Passwords
from services.api.settings import ApiSettings
from shared.broker.base import BrokerMessage
from shared.broker.rabbitmq import RabbitBroker
from shared.errors import PublishFailed
from shared.topology import Exchanges, QueueSpec, Topology
from tests.integration.api.conftest import ADMIN_EMAIL, Applicant, scalar
from tests.security.test_uploads import submit
from tests.support.broker_logins import management
from tests.support.infra import Infra
from tests.support.waiting import eventually
from tests.unit.api.multipart import PDF, FilePart


@pytest.fixture
async def second_replica(api_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process on the same database."""
    application: FastAPI = create_app(api_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


def assert_too_many(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert "too many" in response.json()["detail"]


@pytest.mark.integration
async def test_password_resets_for_one_address_stop_at_the_limit_on_every_replica(
    client: httpx.AsyncClient,
    second_replica: httpx.AsyncClient,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    limit = api_settings.password_resets_per_email_per_hour
    assert limit == 3
    # When someone floods the administrator's address with reset requests, on two replicas
    answers = [
        await (client if n % 2 else second_replica).post(
            "/auth/password-reset", json={"email": ADMIN_EMAIL}
        )
        for n in range(10)
    ]
    # Then the first ones are accepted and the rest refused with Retry-After
    assert [a.status_code for a in answers] == [202] * limit + [429] * (10 - limit)
    assert_too_many(answers[-1])
    # And only that many critical-lane mails were queued
    queued = "SELECT count(*) FROM outbox WHERE type = 'auth.password_reset_requested'"
    assert await scalar(db, queued) == limit


@pytest.mark.integration
async def test_resets_of_many_addresses_from_one_client_stop_at_the_limit(
    client: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    limit = api_settings.password_resets_per_address_per_hour
    codes = [
        (
            await client.post("/auth/password-reset", json={"email": f"victim{n}@example.org"})
        ).status_code
        for n in range(limit + 2)
    ]
    assert codes == [202] * limit + [429] * 2


@pytest.mark.integration
async def test_registrations_with_random_addresses_stop_at_the_limit(
    client: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    limit = api_settings.registrations_per_address_per_hour

    async def register() -> httpx.Response:
        email = f"flood-{uuid.uuid4().hex[:12]}@example.org"
        return await client.post("/auth/register", json={"email": email, "password": "p" * 12})

    # When one client registers limit + 5 accounts at once
    answers = await asyncio.gather(*(register() for _ in range(limit + 5)))
    # Then exactly limit are created (the count is atomic), the rest refused
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * limit + [429] * 5
    assert_too_many(next(a for a in answers if a.status_code == 429))


@pytest.mark.integration
async def test_logins_with_random_addresses_stop_at_the_limit(
    client: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    limit = api_settings.logins_per_address_per_minute
    codes = []
    for _ in range(limit + 3):
        email = f"nobody-{uuid.uuid4().hex[:12]}@example.org"
        answer = await client.post("/auth/token", data={"username": email, "password": "guess"})
        codes.append(answer.status_code)
    assert codes == [401] * limit + [429] * 3


@pytest.mark.integration
async def test_one_time_codes_stop_at_the_limit(
    client: httpx.AsyncClient, alice: Applicant, api_settings: ApiSettings
) -> None:
    limit = api_settings.otp_requests_per_user_per_hour
    codes = [
        (await client.post("/auth/otp", headers=alice.headers)).status_code
        for _ in range(limit + 2)
    ]
    assert codes == [202] * limit + [429] * 2


@pytest.mark.integration
async def test_submissions_of_one_applicant_stop_at_the_limit(
    client: httpx.AsyncClient,
    second_replica: httpx.AsyncClient,
    alice: Applicant,
    bob: Applicant,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    # Through the whole app, so through SubmissionFastPath, which takes POST /applications
    # before FastAPI's routing and dependencies: the limit is counted in accept_submission,
    # once per submission (counted twice, the third would be refused).
    api_settings.submissions_per_applicant_per_hour = 4  # read on every request
    files = [FilePart("cv.pdf", PDF)]
    responses = [await submit(client if n % 2 else second_replica, alice, files) for n in range(6)]
    assert [response.status_code for response in responses] == [202] * 4 + [429] * 2
    for refused in responses[4:]:
        assert_too_many(refused)
    assert await scalar(db, "SELECT count(*) FROM applications") == 4
    # and another applicant is not held back by alice's count
    assert (await submit(client, bob, files)).status_code == 202


@pytest.mark.integration
async def test_rate_limits_off_lets_a_load_generator_through(
    client: httpx.AsyncClient, api_settings: ApiSettings
) -> None:
    api_settings.rate_limits = False
    codes = {
        (await client.post("/auth/password-reset", json={"email": ADMIN_EMAIL})).status_code
        for _ in range(6)
    }
    assert codes == {202}


class CountingHasher:
    """Stands in for pwdlib's hasher: records how many hashes run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return "hashed"

    def verify(self, password: str, password_hash: str) -> bool:
        self.hash(password)
        return False


async def test_argon2_runs_at_most_its_concurrency_and_refuses_past_its_queue() -> None:
    passwords = Passwords(concurrency=2, queue=5)
    counting = CountingHasher()
    passwords._hasher = counting  # type: ignore[assignment]
    # When 20 registrations and logins arrive at once
    results = await asyncio.gather(
        *(passwords.hash("pw") for _ in range(10)),
        *(passwords.verify("pw", None) for _ in range(10)),
        return_exceptions=True,
    )
    # Then at most 2 hashes ran at a time, 7 were served, the others refused at once (503)
    assert counting.most == 2
    busy = [r for r in results if isinstance(r, HashingBusy)]
    assert len(busy) == 13 and busy[0].status_code == 503
    assert busy[0].headers == {"Retry-After": "1"}
    # and once the burst is over, hashing works again
    assert await passwords.hash("pw") == "hashed"


@pytest.mark.integration
async def test_a_full_work_queue_refuses_more_and_operators_see_its_bound(infra: Infra) -> None:
    # Given a work queue bounded to 3 messages, provisioned as operators' definitions do it
    vhost = f"bound_{uuid.uuid4().hex[:8]}"
    spec = QueueSpec("bounded.work", "tests", ("x.y",), max_length=3)
    base, (user, password) = management(infra)
    admin = Management(base, user, password)
    parts = urlsplit(infra.rabbitmq_url)
    await provision(
        admin, vhost, parts.username or "guest", topology=Topology(queues=(spec,)), user_names={}
    )
    broker = await RabbitBroker.connect(
        urlunsplit(parts._replace(path=f"/{vhost}")), connection_name="bounds"
    )
    try:
        # Then the management API (and UI) shows the bound on the queue
        async with httpx.AsyncClient(auth=(user, password), timeout=10) as http:

            async def bounded() -> bool:
                queue = (await http.get(f"{base}/api/queues/{vhost}/{spec.name}")).json()
                effective = queue.get("effective_policy_definition") or {}
                return effective.get("max-length") == 3 and queue.get("policy") == (
                    "work-queues-max-length-3"
                )

            await eventually(bounded, what="the policy applied", timeout=10)
        # And once it is full, the broker refuses more (the relay keeps them in its outbox)
        message = BrokerMessage(b"{}", message_id="m")
        confirmed = 0
        for _ in range(6):
            with contextlib.suppress(PublishFailed):
                await broker.publish(Exchanges().events, "x.y", message)
                confirmed += 1
        # (a quorum queue reaches its reject-publish state with the message that fills it,
        # so it may hold one past the bound)
        assert 3 <= confirmed <= 4
    finally:
        await broker.close()
        async with httpx.AsyncClient(auth=(user, password), timeout=10) as http:
            await http.delete(f"{base}/api/vhosts/{vhost}")

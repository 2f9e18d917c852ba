"""The admin API in-process against the real RabbitMQ (management API included) and Postgres,
on a namespaced topology and throw-away schemas and roles."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from services.api.admin.resources import AdminResources
from services.api.app import create_app
from services.api.settings import ApiSettings
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer import policy
from shared.db.pool import role_conninfo
from shared.errors import UndecodableMessage
from shared.outbox.writer import write_outbox
from shared.topology import Topology, dead_letter_queue_name
from tests.integration.admin.conftest import (
    RunningWorker,
    announcement,
    fetch,
    grant_ops,
    ops_password,
)
from tests.support.amqp import AmqpInspector
from tests.support.database import open_role_pool, role_password, service_schema
from tests.support.events import signed
from tests.support.infra import Infra
from tests.support.waiting import eventually

ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "admin-test-password"


class BlobMissing(Exception):
    pass


@pytest.fixture
async def api_schema(infra: Infra, namespace: str) -> AsyncIterator[str]:
    async with service_schema(infra, f"{namespace}_api", ["services.api.migrations"]) as name:
        yield name


@pytest.fixture
async def api_db(infra: Infra, api_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with open_role_pool(infra, api_schema, max_size=2) as pool:
        yield pool


@pytest.fixture
async def settings(
    infra: Infra, schema: str, api_schema: str, ops_role: str, tmp_path: Path
) -> ApiSettings:
    if infra.management_url is None:
        pytest.skip("these tests need the RabbitMQ management API")
    await grant_ops(infra, ops_role, [api_schema, schema])
    return ApiSettings(
        database_url=infra.database_url,
        rabbitmq_url=infra.rabbitmq_url,
        db_role=api_schema,
        api_db_password=role_password(api_schema),
        ops_db_role=ops_role,
        ops_db_password=ops_password(ops_role),
        ops_schemas=[api_schema, schema],
        rabbitmq_management_url=infra.management_url,
        rabbitmq_management_user=infra.management_user,
        rabbitmq_management_password=infra.management_password,
        jwt_secret="integration-jwt-secret-at-least-32-bytes",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        blob_dir=tmp_path / "blobs",
        blob_fsync=False,
    )


@pytest.fixture
async def app(
    settings: ApiSettings, work_topology: Topology, rabbit: RabbitBroker
) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running, its admin routes pointed at the test's topology."""
    await rabbit.declare(work_topology)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await application.state.admin.close()
        application.state.admin = AdminResources(settings, topology=work_topology)
        yield application


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        token = await client.post(
            "/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


async def dead_letter(
    rabbit: RabbitBroker, topology: Topology, error: Exception, at: datetime
) -> str:
    """A message in the DLQ exactly as the consumer runtime leaves it there."""
    queue = topology.queues[0].name
    envelope = announcement()
    headers = policy.dead_letter_headers(
        {policy.ATTEMPT: 2},
        service=topology.queues[0].service,
        queue=queue,
        attempt=2,
        error=error,
        kind="permanent",
        now=at,
    )
    message = signed(envelope, headers=headers)
    await rabbit.publish(topology.exchanges.dead, queue, message)
    return str(envelope.message_id)


async def test_dead_letters_are_grouped_shown_and_replayed_by_fingerprint(
    admin: httpx.AsyncClient,
    rabbit: RabbitBroker,
    amqp: AmqpInspector,
    work_topology: Topology,
    api_db: AsyncConnectionPool,
) -> None:
    queue = work_topology.queues[0].name
    dlq = dead_letter_queue_name(queue)
    # Given three missing blobs (different digests) and two undecodable messages in the DLQ
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    blobs = [
        await dead_letter(
            rabbit,
            work_topology,
            BlobMissing(f"blob {hashlib.sha256(bytes([i])).hexdigest()} not found"),
            start + timedelta(minutes=i),
        )
        for i in range(3)
    ]
    for i in range(2):
        await dead_letter(rabbit, work_topology, UndecodableMessage(f"bad at char {i}"), start)

    # When an operator lists the dead letters
    listed = await admin.get("/admin/dead-letters")

    # Then there are two groups, and nothing left the DLQ
    assert listed.status_code == 200, listed.text
    body = listed.json()
    groups = {g["errorType"]: g for g in body["groups"]}
    assert {k: g["count"] for k, g in groups.items()} == {"BlobMissing": 3, "UndecodableMessage": 2}
    blob_group = groups["BlobMissing"]
    assert blob_group["message"] == "blob <hex> not found"
    assert blob_group["firstSeen"].startswith("2026-05-01T12:00:00")
    assert blob_group["lastSeen"].startswith("2026-05-01T12:02:00")
    assert blob_group["sample"]["messageId"] in blobs
    assert body["queues"] == [
        {"queue": queue, "deadLetterQueue": dlq, "scanned": 5, "complete": True}
    ]
    await holds(amqp, dlq, 5)

    # And one message can be read whole
    detail = await admin.get(f"/admin/dead-letters/{queue}/{blobs[1]}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["headers"][policy.ERROR_TYPE] == "BlobMissing"
    assert detail.json()["bodyEncoding"] == "utf-8"
    assert blobs[1] in detail.json()["body"]
    missing = await admin.get(f"/admin/dead-letters/{queue}/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404

    # When the blob group is replayed as a dry run
    request = {"queue": queue, "fingerprint": blob_group["fingerprint"], "dryRun": True}
    dry = await admin.post("/admin/dead-letters/replay", json=request)

    # Then it names the three, and nothing moved
    assert dry.status_code == 200, dry.text
    assert sorted(dry.json()["messageIds"]) == sorted(blobs)
    await holds(amqp, dlq, 5)
    assert await amqp.depth(queue) == 0

    # When it is replayed for real
    real = await admin.post(
        "/admin/dead-letters/replay", json={**request, "dryRun": False, "ratePerSecond": 20}
    )

    # Then the three are back in the work queue with their ids, marked as replayed, and only
    # the undecodable ones are left in the DLQ
    assert real.status_code == 200, real.text
    assert real.json()["count"] == 3
    await holds(amqp, dlq, 2)
    replayed = await amqp.take(queue, 3)
    assert sorted(m.message_id or "" for m in replayed) == sorted(blobs)
    for message in replayed:
        headers = message.headers or {}
        assert headers["x-replayed-by"] == ADMIN_EMAIL
        assert policy.ERROR_TYPE not in headers and policy.ATTEMPT not in headers
    audit = await fetch(
        api_db, "SELECT requested_by, dry_run, count, queue FROM replays ORDER BY id"
    )
    assert audit == [(ADMIN_EMAIL, True, 3, queue), (ADMIN_EMAIL, False, 3, queue)]


async def test_pause_and_resume_reach_the_workers_and_show_in_the_queue_list(
    admin: httpx.AsyncClient,
    app: FastAPI,
    worker: RunningWorker,
) -> None:
    queue = worker.topology.queues[0].name
    # Given nobody listening for control commands: a pause reaches nobody and says so
    nobody = await admin.post(f"/admin/queues/{queue}/pause")
    assert nobody.status_code == 409, nobody.text

    # Given a running worker, and the management API seeing its control queue's consumer
    await worker.start()

    async def listening() -> bool:
        listed = await app.state.admin.management.queues()
        return any(
            name.startswith(f"control.{worker.schema}.") and stats.consumers == 1
            for name, stats in listed.items()
        )

    await eventually(listening, timeout=20, interval=0.5, what="the worker's control consumer")

    # When the operator pauses the queue
    paused = await admin.post(f"/admin/queues/{queue}/pause")

    # Then the command is accepted for one listening worker, and the list shows the pause
    assert paused.status_code == 202, paused.text
    assert paused.json()["listeners"] == 1
    assert paused.json()["service"] == worker.schema

    async def shown_paused(expected: bool) -> bool:
        listed = await admin.get("/admin/queues")
        [view] = [q for q in listed.json()["queues"] if q["name"] == queue]
        return view["paused"] is expected

    await eventually(lambda: shown_paused(True), timeout=20, interval=0.2, what="paused")
    listed = (await admin.get("/admin/queues")).json()
    [view] = listed["queues"]
    assert view["pausedBy"] == ADMIN_EMAIL
    assert [t["name"] for t in view["retryTiers"]] == [f"{queue}.retry.1s"]
    assert view["deadLetters"]["name"] == f"{queue}.dlq"

    # When it is resumed
    resumed = await admin.post(f"/admin/queues/{queue}/resume")
    assert resumed.status_code == 202
    await eventually(lambda: shown_paused(False), timeout=20, interval=0.2, what="resumed")


async def test_outbox_backlog_and_a_message_timeline(
    admin: httpx.AsyncClient,
    api_db: AsyncConnectionPool,
    pool: AsyncConnectionPool,
    api_schema: str,
    schema: str,
) -> None:
    # Given one published and two unpublished events in the API's outbox
    published, waiting = announcement(1), [announcement(2), announcement(3)]
    async with api_db.connection() as conn:
        await write_outbox(conn, api_schema, [published, *waiting])
        await conn.execute(
            "UPDATE outbox SET published_at = created_at + interval '5 ms' WHERE message_id = %s",
            (published.message_id,),
        )
    # and the worker's timeline of the published one: a retry, then success
    async with api_db.connection() as conn:
        created = (
            await (
                await conn.execute(
                    "SELECT created_at FROM outbox WHERE message_id = %s", (published.message_id,)
                )
            ).fetchone()
        )[0]  # type: ignore[index]
    async with pool.connection() as conn:
        for attempt, outcome, offset in ((1, "retried", 10), (2, "processed", 2000)):
            await conn.execute(
                "INSERT INTO message_log (message_id, queue, attempt, outcome, seconds,"
                " error_type, at) VALUES (%s, 'q', %s, %s, 0.01, %s, %s)",
                (
                    str(published.message_id),
                    attempt,
                    outcome,
                    "BlobMissing" if outcome == "retried" else None,
                    created + timedelta(milliseconds=offset),
                ),
            )

    # When the operator looks at the outbox
    backlog = await admin.get("/admin/outbox")

    # Then each source says how much waits
    assert backlog.status_code == 200, backlog.text
    sources = {s["source"]: s for s in backlog.json()["sources"]}
    assert sources[api_schema]["unpublished"] == 2
    assert sources[api_schema]["oldestAgeSeconds"] >= 0
    assert sources[schema]["unpublished"] == 0
    assert sources[schema]["oldestCreatedAt"] is None

    # When the operator asks for the published message's timeline
    timeline = await admin.get(f"/admin/messages/{published.message_id}/timeline")

    # Then it goes from the outbox to the worker's attempts, in order
    assert timeline.status_code == 200, timeline.text
    body = timeline.json()
    assert body["outbox"]["source"] == api_schema
    assert body["outbox"]["type"] == "announcement.published"
    assert [(s["step"], s["service"], s.get("attempt")) for s in body["steps"]] == [
        ("created", api_schema, None),
        ("published", api_schema, None),
        ("retried", schema, 1),
        ("processed", schema, 2),
    ]
    assert body["steps"][2]["errorType"] == "BlobMissing"
    unknown = await admin.get("/admin/messages/00000000-0000-0000-0000-000000000000/timeline")
    assert unknown.status_code == 404


async def test_the_ops_role_reads_operations_tables_and_nothing_else(
    infra: Infra, settings: ApiSettings, api_schema: str
) -> None:
    conninfo = role_conninfo(
        infra.database_url, settings.ops_db_role, settings.ops_db_password.get_secret_value()
    )
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for table in ("outbox", "message_log", "queue_controls"):
            await conn.execute(f'SELECT count(*) FROM "{api_schema}".{table}')
        for statement in (
            f'SELECT count(*) FROM "{api_schema}".users',
            f'SELECT count(*) FROM "{api_schema}".applications',
            f'DELETE FROM "{api_schema}".outbox',
            f"INSERT INTO \"{api_schema}\".queue_controls VALUES ('q', true, now(), 'me')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)


async def holds(amqp: AmqpInspector, queue: str, count: int) -> None:
    """``queue`` holds ``count`` messages, once the broker has put back what a closed channel
    left unacknowledged (a quorum queue does it a moment after the close)."""

    async def depth_is() -> bool:
        return await amqp.depth(queue) == count

    await eventually(depth_is, timeout=10, what=f"{queue} to hold {count} messages")

"""Operating the running system through the admin API: dead letters and their replay, pausing
a lane across a restart of its service, and a message's timeline through every consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from shared.blobs import BlobStore
from shared.broker.base import BrokerMessage
from shared.broker.rabbitmq import RabbitBroker
from tests.e2e.conftest import Applicant, mails_to, pdf_bytes
from tests.e2e.test_admission_flow import wait_for_terminal
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

VERIFIER = "verifier.documents"
MEDIUM_LANE = "mailer.medium"
ADMIN = {"username": "admin@example.org", "password": "admin-dev-password"}


@pytest.fixture
async def admin(system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    """An administrator's client; whatever a test paused is resumed afterwards."""
    async with httpx.AsyncClient(base_url=system.api, timeout=60) as client:
        token = await client.post("/auth/token", data=ADMIN)
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client
        for queue in (VERIFIER, MEDIUM_LANE):
            await client.post(f"/admin/queues/{queue}/resume")


async def queue_view(admin: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await admin.get("/admin/queues")
    assert response.status_code == 200, response.text
    [view] = [q for q in response.json()["queues"] if q["name"] == name]
    return view  # type: ignore[no-any-return]


async def wait_paused(admin: httpx.AsyncClient, name: str, paused: bool) -> None:
    async def matches() -> bool:
        return (await queue_view(admin, name))["paused"] is paused

    await eventually(matches, timeout=30, interval=0.3, what=f"{name} paused={paused}")


async def dlq_depth(system: RunningSystem, queue: str) -> int:
    connection = await aio_pika.connect(system.rabbitmq_url)
    async with connection, connection.channel() as channel:
        declared = await channel.declare_queue(f"{queue}.dlq", passive=True)
        return int(declared.declaration_result.message_count or 0)


async def groups_of(admin: httpx.AsyncClient, queue: str) -> dict[str, dict[str, Any]]:
    response = await admin.get("/admin/dead-letters")
    assert response.status_code == 200, response.text
    return {g["errorType"]: g for g in response.json()["groups"] if g["queue"] == queue}


async def timeline(admin: httpx.AsyncClient, message_id: str) -> list[dict[str, Any]]:
    response = await admin.get(f"/admin/messages/{message_id}/timeline")
    assert response.status_code == 200, response.text
    steps: list[dict[str, Any]] = response.json()["steps"]
    return steps


async def submitted_message_id(applicant: Applicant, application_id: str) -> str:
    """The application.submitted event's id, from the application's own history."""
    history: list[dict[str, Any]] = (await applicant.status(application_id))["history"]  # type: ignore[assignment]
    return str(history[0]["messageId"])


async def test_poisoned_verifier_queue_is_grouped_and_one_group_replayed_once(
    system: RunningSystem, applicant: Applicant, admin: httpx.AsyncClient
) -> None:
    """Two kinds of poison, 10 each, both dead-lettered by the verifier:
    - 10 messages that are not JSON: bad for ever (UndecodableMessage, dead-lettered at once);
    - 10 real applications whose uploaded files vanished from the blob store (an unmounted
      volume): BlobMissing is transient, so each is retried 2 s, 4 s, 8 s, then dead-lettered.
    The second kind is the one worth replaying: once the files are back, each application is
    verified exactly once and completes. That shows more than replaying messages that are
    still bad and come straight back."""
    # Given the verifier paused, so that the blobs can vanish before it looks at them
    assert (await admin.post(f"/admin/queues/{VERIFIER}/pause")).status_code == 202
    await wait_paused(admin, VERIFIER, True)
    store = BlobStore(Path(system.env["BLOB_DIR"]))
    files: dict[str, bytes] = {}
    applications = []
    for index in range(10):
        content = pdf_bytes(1, text=f"lost-{uuid.uuid4()}-{index}")
        accepted = await applicant.submit([("lost.pdf", content, "application/pdf")])
        assert accepted.status_code == 202, accepted.text
        applications.append(accepted.json()["applicationId"])
        status = await applicant.status(accepted.json()["applicationId"])
        [document] = status["documents"]  # type: ignore[misc]
        files[document["sha256"]] = content
    for sha256 in files:
        store.path(sha256).unlink()
    # and ten messages that are not even JSON, straight into the verifier's queue
    broker = await RabbitBroker.connect(system.rabbitmq_url, connection_name="e2e-poisoner")
    try:
        for _ in range(10):
            garbage = BrokerMessage(
                body=b'{"type": "application.submitted", oops', message_id=str(uuid.uuid4())
            )
            await broker.publish("admissions.retry", VERIFIER, garbage)
    finally:
        await broker.close()

    # When the verifier resumes
    assert (await admin.post(f"/admin/queues/{VERIFIER}/resume")).status_code == 202

    # Then the dead letters show as two groups of ten
    async def two_groups() -> bool:
        found = await groups_of(admin, VERIFIER)
        return {kind: g["count"] for kind, g in found.items()} == {
            "UndecodableMessage": 10,
            "BlobMissing": 10,
        }

    await eventually(two_groups, timeout=90, interval=1, what="two groups of ten dead letters")
    missing = (await groups_of(admin, VERIFIER))["BlobMissing"]
    assert missing["message"].startswith("blob <hex> not found")
    assert await dlq_depth(system, VERIFIER) == 20

    # When the files are back and the BlobMissing group is replayed as a dry run
    for sha256, content in files.items():
        store.path(sha256).parent.mkdir(parents=True, exist_ok=True)
        store.path(sha256).write_bytes(content)
    request = {"queue": VERIFIER, "fingerprint": missing["fingerprint"], "dryRun": True}
    dry = await admin.post("/admin/dead-letters/replay", json=request)

    # Then it names the ten, and nothing moves
    assert dry.status_code == 200, dry.text
    assert dry.json()["count"] == 10
    await asyncio.sleep(1)
    assert await dlq_depth(system, VERIFIER) == 20
    assert (await groups_of(admin, VERIFIER))["BlobMissing"]["count"] == 10

    # When it is replayed for real
    real = await admin.post("/admin/dead-letters/replay", json={**request, "dryRun": False})

    # Then each application is verified once and completes; only the garbage stays dead
    assert real.status_code == 200, real.text
    assert sorted(real.json()["messageIds"]) == sorted(dry.json()["messageIds"])
    for application_id in applications:
        assert (await wait_for_terminal(applicant, application_id))["status"] == "completed"
        steps = await timeline(admin, await submitted_message_id(applicant, application_id))
        verifier = [(s["attempt"], s["step"]) for s in steps if s["queue"] == VERIFIER]
        assert verifier == [
            (1, "retried"),
            (2, "retried"),
            (3, "retried"),
            (4, "dead-lettered"),
            (1, "processed"),
        ]
    assert await dlq_depth(system, VERIFIER) == 10
    assert set(await groups_of(admin, VERIFIER)) == {"UndecodableMessage"}
    # (the garbage is removed again, so the rest of the session sees a clean verifier DLQ)
    connection = await aio_pika.connect(system.rabbitmq_url)
    async with connection, connection.channel() as channel:
        await (await channel.get_queue(f"{VERIFIER}.dlq")).purge()


async def test_a_paused_lane_holds_its_mail_across_a_mailer_restart_until_resumed(
    system: RunningSystem, applicant: Applicant, admin: httpx.AsyncClient
) -> None:
    # Given the medium lane (confirmations) paused
    paused = await admin.post(f"/admin/queues/{MEDIUM_LANE}/pause")
    assert paused.status_code == 202, paused.text
    assert paused.json()["listeners"] >= 1
    await wait_paused(admin, MEDIUM_LANE, True)

    # When an application is submitted
    accepted = await applicant.submit([("a.pdf", pdf_bytes(1), "application/pdf")])
    assert accepted.status_code == 202

    # Then its confirmation waits in the lane: ready there, nobody consuming, no mail
    async def waiting_in_the_lane() -> bool:
        view = await queue_view(admin, MEDIUM_LANE)
        return view["ready"] > 0 and view["consumers"] == 0

    await eventually(waiting_in_the_lane, timeout=30, interval=0.5, what="a ready confirmation")
    assert not _templates(system, applicant.email, "confirmation")

    # When the mailer restarts
    await system.restart("mailer")

    # Then the lane is still paused and the confirmation still waits
    await asyncio.sleep(3)
    assert (await queue_view(admin, MEDIUM_LANE))["paused"] is True
    await eventually(waiting_in_the_lane, timeout=30, interval=0.5, what="still waiting")
    assert not _templates(system, applicant.email, "confirmation")

    # When the lane is resumed (once the restarted mailer listens again)
    async def resumed_by_a_listener() -> bool:
        response = await admin.post(f"/admin/queues/{MEDIUM_LANE}/resume")
        assert response.status_code == 202, response.text
        return bool(response.json()["listeners"])

    await eventually(resumed_by_a_listener, timeout=30, interval=1, what="a mailer listening")

    # Then the confirmation is sent
    await eventually(
        lambda: len(_templates(system, applicant.email, "confirmation")) == 1,
        timeout=30,
        what="the confirmation",
    )
    await wait_paused(admin, MEDIUM_LANE, False)


async def test_the_timeline_of_a_submission_shows_every_consumer(
    system: RunningSystem, applicant: Applicant, admin: httpx.AsyncClient
) -> None:
    # Given a completed application
    accepted = await applicant.submit([("a.pdf", pdf_bytes(2), "application/pdf")])
    application_id = accepted.json()["applicationId"]
    assert (await wait_for_terminal(applicant, application_id))["status"] == "completed"
    message_id = await submitted_message_id(applicant, application_id)

    # When the operator asks for its application.submitted event's timeline
    async def every_consumer_processed_it() -> bool:
        steps = await timeline(admin, message_id)
        processed = {s["queue"] for s in steps if s["step"] == "processed"}
        return processed == {VERIFIER, MEDIUM_LANE}

    # Then it was created and published by the API, then processed by each consumer once (the
    # verifier and the mailer: the accept statement itself wrote "verifying", no projector hop)
    await eventually(every_consumer_processed_it, timeout=10, interval=0.2, what="two consumers")
    steps = await timeline(admin, message_id)
    assert [s["step"] for s in steps[:2]] == ["created", "published"]
    assert {s["service"] for s in steps[:2]} == {"api"}
    assert {(s["service"], s["queue"]) for s in steps[2:]} == {
        ("verifier", VERIFIER),
        ("mailer", MEDIUM_LANE),
    }
    assert all(s["attempt"] == 1 and s["seconds"] >= 0 for s in steps[2:])
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)


def _templates(system: RunningSystem, recipient: str, template: str) -> list[object]:
    return [
        m
        for m in mails_to(system.mail_dir, recipient)
        if str(m["X-Email-Template"]) == template  # type: ignore[index]
    ]

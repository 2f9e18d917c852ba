"""The admission flow end to end: every service a real process, real RabbitMQ, Postgres and
SMTP server, payments through the sandbox."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import aio_pika
import httpx

from services.api.statuses import TERMINAL
from shared.broker.rabbitmq import RabbitBroker
from shared.events.catalog import AnnouncementDelivery
from shared.events.envelope import new_envelope
from tests.e2e.conftest import Applicant, mails_to, pdf_bytes, register
from tests.support.events import signed
from tests.support.system import RunningSystem
from tests.support.waiting import eventually


async def wait_for_terminal(
    applicant: Applicant, application_id: str, timeout: float = 90
) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def terminal() -> bool:
        nonlocal latest
        latest = await applicant.status(application_id)
        return latest["status"] in TERMINAL

    await eventually(terminal, timeout=timeout, interval=0.3, what=f"{application_id} to finish")
    return latest


def templates_for(system: RunningSystem, recipient: str) -> Counter[str]:
    return Counter(str(m["X-Email-Template"]) for m in mails_to(system.mail_dir, recipient))  # type: ignore[index]


async def test_two_valid_pdfs_reach_completed_with_one_of_each_email(
    system: RunningSystem, applicant: Applicant
) -> None:
    # Given an applicant with two valid PDFs, and a provider that pays by itself
    files = [
        ("transcript.pdf", pdf_bytes(2), "application/pdf"),
        ("id.pdf", pdf_bytes(1), "application/pdf"),
    ]

    # When they submit
    accepted = await applicant.submit(files)

    # Then the API answers at once, and the application completes
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert accepted.headers["Location"].endswith(body["applicationId"])
    assert body["statusUrl"].endswith(f"/applications/{body['applicationId']}/status")
    assert body["payUrl"].endswith(f"/payments/checkout/{body['applicationId']}")
    status = await wait_for_terminal(applicant, body["applicationId"])
    assert status["status"] == "completed"
    assert status["progress"] == 100
    history = [entry["status"] for entry in status["history"]]
    assert history[0] == "submitted" and history[-1] == "completed"
    await eventually(
        lambda: (
            templates_for(system, applicant.email)
            == Counter({"confirmation": 1, "pay_link": 1, "receipt": 1, "application_complete": 1})
        ),
        timeout=30,
        what="the four emails",
    )


async def test_a_corrupt_file_fails_verification_with_an_email(
    system: RunningSystem, applicant: Applicant
) -> None:
    corrupt = b"%PDF-1.7\n" + b"\x00garbage" * 100
    accepted = await applicant.submit([("broken.pdf", corrupt, "application/pdf")])
    assert accepted.status_code == 202, accepted.text

    status = await wait_for_terminal(applicant, accepted.json()["applicationId"])

    assert status["status"] == "verification_failed"
    await eventually(
        lambda: templates_for(system, applicant.email)["documents_rejected"] == 1,
        timeout=30,
        what="the documents-rejected email",
    )


async def test_the_same_idempotency_key_twice_makes_one_application(
    system: RunningSystem, applicant: Applicant
) -> None:
    key = str(uuid.uuid4())
    files = [("a.pdf", pdf_bytes(1), "application/pdf")]

    first = await applicant.submit(files, idempotency_key=key)
    second = await applicant.submit(files, idempotency_key=key)

    assert first.status_code == second.status_code == 202
    assert first.json()["applicationId"] == second.json()["applicationId"]
    mine = (await applicant.client.get("/applications")).json()
    assert len(mine) == 1

    async with httpx.AsyncClient(base_url=system.api, timeout=30) as other_client:
        other = await register(other_client)
        response = await other.client.get(f"/applications/{first.json()['applicationId']}/status")
        assert response.status_code == 404


async def test_password_reset_arrives_while_the_batch_lane_holds_a_backlog(
    system: RunningSystem, applicant: Applicant
) -> None:
    # Given thousands of bulk announcements waiting in the batch lane
    broker = await RabbitBroker.connect(system.rabbitmq_url, connection_name="e2e-announcer")
    announcements = [
        signed(
            new_envelope(
                AnnouncementDelivery(
                    announcement_id="00000000-0000-4000-8000-00000000b10c",
                    recipient=f"bulk-{i}@example.org",
                    subject="Open day",
                    body="Come and see us.",
                )
            )
        )
        for i in range(3000)
    ]
    await asyncio.gather(
        *(broker.publish("admissions.events", "announcement.delivery", m) for m in announcements)
    )

    # When the applicant asks for a password reset
    asked = time.monotonic()
    response = await applicant.client.post("/auth/password-reset", json={"email": applicant.email})
    assert response.status_code == 202

    # Then the reset mail arrives while the batch lane still holds most of its backlog
    await eventually(
        lambda: templates_for(system, applicant.email)["password_reset"] == 1,
        timeout=30,
        what="the password-reset email",
    )
    waited = time.monotonic() - asked
    bulk_sent = sum(1 for m in _all_mail(system) if "bulk-" in str(m["To"]))  # type: ignore[index]
    assert bulk_sent < len(announcements) / 2, (bulk_sent, waited)
    await broker.close()
    # The rest of the backlog would hold the batch lane for minutes, behind which the
    # announcements the later tests publish would wait.
    await purge(system, "mailer.batch")


async def purge(system: RunningSystem, queue: str) -> None:
    connection = await aio_pika.connect(system.rabbitmq_url)
    async with connection, connection.channel() as channel:
        await (await channel.declare_queue(queue, passive=True)).purge()


def _all_mail(system: RunningSystem) -> list[object]:
    from devtools.smtp_catcher import read_mailbox

    return list(read_mailbox(system.mail_dir))


async def test_a_failing_provider_is_retried_then_the_payment_fails(
    system: RunningSystem, applicant: Applicant
) -> None:
    # Given a payment provider that refuses every checkout
    await system.restart("sandbox", PSP_FAILURE_RATE="1")
    try:
        started = time.monotonic()
        accepted = await applicant.submit([("a.pdf", pdf_bytes(1), "application/pdf")])
        assert accepted.status_code == 202

        status = await wait_for_terminal(applicant, accepted.json()["applicationId"], timeout=120)

        # Then it failed only after the queue's retry tiers were used (2 s + 4 s + 8 s)
        assert status["status"] == "payment_failed"
        assert time.monotonic() - started >= 14
    finally:
        await system.restart("sandbox", PSP_FAILURE_RATE="0")

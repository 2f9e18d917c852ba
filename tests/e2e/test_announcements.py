"""Announcements through the running system: published over HTTP, fanned out on the mailer's
batch lane at its rate, at most once per recipient even when the mailer is killed half-way,
cancellable, and not sent to whoever followed the unsubscribe link (who still gets the mails
about their own application)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx

from shared.system_topology import MAILER_LANES
from tests.e2e.bulk import (
    admin_client,
    caught,
    lane_in_queue_view,
    lane_wait_count,
    seed_applicants,
)
from tests.e2e.conftest import Applicant, pdf_bytes, status_once
from tests.support.system import RunningSystem
from tests.support.waiting import eventually


async def publish(admin: httpx.AsyncClient, subject: str, audience: dict[str, Any]) -> str:
    response = await admin.post(
        "/admin/announcements",
        json={
            "subject": subject,
            "body": "Open day on Friday.\n\nBring a pen.",
            "audience": audience,
        },
    )
    assert response.status_code == 202, response.text
    return str(response.json()["announcementId"])


async def progress(admin: httpx.AsyncClient, announcement_id: str) -> dict[str, Any]:
    response = await admin.get(f"/admin/announcements/{announcement_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sent_at_least(admin: httpx.AsyncClient, announcement_id: str, count: int) -> None:
    async def reached() -> bool:
        return int((await progress(admin, announcement_id))["sent"]) >= count

    await eventually(reached, timeout=60, interval=0.2, what=f"{count} mails sent")


async def settled(admin: httpx.AsyncClient, announcement_id: str, timeout: float) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal latest
        latest = await progress(admin, announcement_id)
        return latest["status"] == "done"

    await eventually(done, timeout=timeout, interval=0.5, what=f"announcement {announcement_id}")
    return latest


def recipients_of(system: RunningSystem, subject: str) -> Counter[str]:
    return Counter(str(h["To"]) for _, h in caught(system.mail_dir, Subject=subject))


async def test_an_announcement_to_500_applicants_mails_each_once_though_the_mailer_is_killed(
    system: RunningSystem,
) -> None:
    # Given 500 applicants of one program
    program = f"Announced Studies {uuid.uuid4().hex[:6]}"
    tag = await seed_applicants(system.database_url, 500, program)
    subject = f"Open day {uuid.uuid4().hex[:6]}"
    async with admin_client(system.api) as admin:
        # When an announcement to the program is published
        announcement_id = await publish(admin, subject, {"kind": "program", "value": program})

        # And the mailer is killed (-9) once a hundred have gone out
        await sent_at_least(admin, announcement_id, 100)
        restarts = system.supervisor.restarts("mailer")
        system.supervisor.kill("mailer")
        at_kill = (await progress(admin, announcement_id))["sent"]
        assert at_kill < 450, at_kill  # the kill came mid-fan-out

        # Then, after its restart, every applicant gets the announcement, and none twice
        final = await settled(admin, announcement_id, timeout=120)
        # And the batch lane showed the work with the other lanes (queue view, lane metrics)
        batch = await lane_in_queue_view(admin, "batch")
        assert batch["name"] == "mailer.batch"
        assert await lane_wait_count(system, "batch") >= final["sent"] - at_kill
    mailed = recipients_of(system, subject)
    assert system.supervisor.restarts("mailer") == restarts + 1
    assert final["total"] == 500
    assert max(mailed.values()) == 1, mailed.most_common(3)
    assert set(mailed) <= {f"{tag}-{n}@example.org" for n in range(1, 501)}
    # A mail the kill caught between the ledger and SMTP's answer is not sent again: it shows
    # as failed ("interrupted"): at most the deliveries the mailer had in hand (its prefetch).
    assert final["failed"] <= MAILER_LANES["batch"].prefetch
    assert final["sent"] + final["failed"] == 500
    assert final["sent"] <= len(mailed) <= 500
    assert len(mailed) >= 500 - final["failed"]
    if final["failed"] == 0:
        assert len(mailed) == sum(mailed.values()) == 500  # exactly 500 mails


async def test_cancel_stops_an_announcement(system: RunningSystem) -> None:
    # Given an announcement to 300 applicants going out at the batch lane's rate
    program = f"Cancelled Studies {uuid.uuid4().hex[:6]}"
    await seed_applicants(system.database_url, 300, program)
    subject = f"Cancelled news {uuid.uuid4().hex[:6]}"
    async with admin_client(system.api) as admin:
        announcement_id = await publish(admin, subject, {"kind": "program", "value": program})
        await sent_at_least(admin, announcement_id, 20)

        # When an administrator cancels it
        cancelled = await admin.post(
            f"/admin/announcements/{announcement_id}", json={"action": "cancel"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["cancelledAt"] is not None

        # Then the rest are skipped, not mailed, and nothing more goes out
        final = await settled(admin, announcement_id, timeout=60)
    assert final["total"] == 300
    assert final["skipped"] > 200
    assert final["sent"] + final["failed"] + final["skipped"] == 300
    await asyncio.sleep(2)
    assert sum(recipients_of(system, subject).values()) == final["sent"]


async def test_an_unsubscribed_applicant_gets_no_announcement_but_still_the_receipt(
    system: RunningSystem, applicant: Applicant
) -> None:
    # Given an applicant with a completed application, and one announcement mailed to them
    program = f"Quiet Studies {uuid.uuid4().hex[:6]}"
    first = await applicant.submit([("a.pdf", pdf_bytes(), "application/pdf")], program=program)
    assert first.status_code == 202, first.text
    await status_once(applicant, first.json()["applicationId"], "completed")
    audience = {"kind": "program", "value": program}
    async with admin_client(system.api) as admin:
        before = f"Before {uuid.uuid4().hex[:6]}"
        await settled(admin, await publish(admin, before, audience), timeout=60)
        [(_, mail)] = caught(system.mail_dir, Subject=before)
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(mail["List-Unsubscribe"]).strip("<>")

        # When they follow the signed unsubscribe link (a forged one does nothing)
        async with httpx.AsyncClient(timeout=30) as browser:
            forged = link.replace(applicant.email.split("@")[0], "someone-else")
            assert (await browser.post(forged)).status_code == 400
            assert (await browser.get(link)).status_code == 200  # a page with a button
            assert (await browser.post(link)).status_code == 200

        # Then the next announcement to their program does not reach them
        after = f"After {uuid.uuid4().hex[:6]}"
        final = await settled(admin, await publish(admin, after, audience), timeout=60)
        assert final["sent"] == 0
        assert caught(system.mail_dir, Subject=after) == []

    # But the mails about their own application still come: a new application's receipt
    second = await applicant.submit([("b.pdf", pdf_bytes(), "application/pdf")], program=program)
    assert second.status_code == 202, second.text
    application_id = second.json()["applicationId"]
    await status_once(applicant, application_id, "completed")

    async def receipt() -> bool:
        return bool(
            caught(system.mail_dir, X_Email_Template="receipt", X_Application_Id=application_id)
        )

    await eventually(receipt, timeout=30, interval=0.5, what="the receipt of the new application")

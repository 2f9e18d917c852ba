"""Announcements through the running system: published over HTTP, fanned out on the mailer's
batch lane at its rate, to every recipient under one Message-ID each even when the mailer is
killed half-way (or inside an SMTP call), cancellable, and not sent to whoever followed the
unsubscribe link (who still gets the mails about their own application)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.smtp_catcher import MailDirHandler, start_catcher, stop_catcher
from devtools.system import free_port
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
    """How many copies each recipient got (a copy sent again after a crash included)."""
    return Counter(str(h["To"]) for _, h in caught(system.mail_dir, Subject=subject))


def message_ids_of(system: RunningSystem, subject: str) -> dict[str, set[str]]:
    """The distinct mails each recipient got: a copy sent again carries the same Message-ID,
    and receiving systems, like the chaos audit, count it as the same mail."""
    found: defaultdict[str, set[str]] = defaultdict(set)
    for _, headers in caught(system.mail_dir, Subject=subject):
        found[str(headers["To"])].add(str(headers["Message-ID"]))
    return dict(found)


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

        # Then, after its restart, every applicant gets the announcement, as one mail each
        final = await settled(admin, announcement_id, timeout=120)
        # And the batch lane showed the work with the other lanes (queue view, lane metrics)
        batch = await lane_in_queue_view(admin, "batch")
        assert batch["name"] == "mailer.batch"
        assert await lane_wait_count(system, "batch") >= final["sent"] - at_kill
    mail_ids = message_ids_of(system, subject)
    assert system.supervisor.restarts("mailer") == restarts + 1
    assert final["total"] == final["sent"] == 500
    assert final["failed"] == 0
    # Every applicant got it, as one mail (a copy sent again after the kill, because the mailer
    # died between SMTP's answer and its commit, carries the same Message-ID)
    assert set(mail_ids) == {f"{tag}-{n}@example.org" for n in range(1, 501)}
    assert all(len(ids) == 1 for ids in mail_ids.values()), mail_ids
    # And copies are at most the deliveries the mailer had in hand (its prefetch)
    copies = recipients_of(system, subject)
    assert sum(copies.values()) - 500 <= MAILER_LANES["batch"].prefetch, copies.most_common(3)


class AnswerWithheld(MailDirHandler):
    """An SMTP server that withholds its answer to the DATA of the first mail to each
    ``trapped`` recipient, so the mailer sits inside its SMTP call until the test kills it:
    the mail is lost with the connection (``trapped[recipient]`` False), or stored first and
    only the answer lost (True). Every later mail is taken as usual."""

    def __init__(self, mail_dir: Path, trapped: Mapping[str, bool]) -> None:
        super().__init__(mail_dir)
        self.trapped = dict(trapped)
        self.withheld: set[str] = set()
        self.all_withheld = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient in self.trapped and recipient not in self.withheld:
            if self.trapped[recipient]:
                await super().handle_DATA(server, session, envelope)
            self.withheld.add(recipient)
            if self.withheld == set(self.trapped):
                self.all_withheld.set()
            await asyncio.Future()  # never answered: cancelled when the connection drops
        return await super().handle_DATA(server, session, envelope)


@asynccontextmanager
async def mailer_sending_to(system: RunningSystem, handler: MailDirHandler) -> AsyncIterator[None]:
    """The system's mailer talks to ``handler``'s server for the block, then to the catcher
    again. Meanwhile it waits for an answer longer than any test (a withheld answer is waited
    for until the test kills the mailer, not given up on as a transient failure)."""
    settings = ("SMTP_PORT", "SMTP_TIMEOUT")
    before = {name: system.env.get(name) for name in settings}
    port = free_port()
    server = await start_catcher("127.0.0.1", port, handler)
    try:
        await system.restart("mailer", SMTP_PORT=str(port), SMTP_TIMEOUT="3600")
        yield
    finally:
        for name, value in before.items():
            if value is None:
                system.env.pop(name, None)
            else:
                system.env[name] = value
        await system.restart("mailer")
        await stop_catcher(server)


async def test_a_mailer_killed_inside_its_smtp_call_still_mails_each_recipient_once(
    system: RunningSystem,
) -> None:
    # Given 40 applicants of one program, and an SMTP server that withholds its answer to the
    # first mail of two of them: one mail it loses, one it stores (its answer is what is lost)
    program = f"Withheld Studies {uuid.uuid4().hex[:6]}"
    tag = await seed_applicants(system.database_url, 40, program)
    lost, stored = f"{tag}-1@example.org", f"{tag}-2@example.org"
    server = AnswerWithheld(system.mail_dir, {lost: False, stored: True})
    subject = f"Withheld {uuid.uuid4().hex[:6]}"
    async with mailer_sending_to(system, server), admin_client(system.api) as admin:
        # When an announcement to the program is published
        announcement_id = await publish(admin, subject, {"kind": "program", "value": program})
        # And the mailer is killed (-9) while it waits for the server's answer to both: each
        # delivery's ledger row and mail record written, the mail handed to SMTP
        await asyncio.wait_for(server.all_withheld.wait(), timeout=60)
        restarts = system.supervisor.restarts("mailer")
        system.supervisor.kill("mailer")

        # Then, after its restart, the announcement is done with every recipient mailed
        final = await settled(admin, announcement_id, timeout=120)
        assert system.supervisor.restarts("mailer") == restarts + 1
    assert (final["total"], final["sent"], final["failed"]) == (40, 40, 0)
    mail_ids = message_ids_of(system, subject)
    assert set(mail_ids) == {f"{tag}-{n}@example.org" for n in range(1, 41)}
    # And each under one Message-ID: the stored one went out again, as the same mail
    assert all(len(ids) == 1 for ids in mail_ids.values()), mail_ids
    copies = recipients_of(system, subject)
    assert (copies[lost], copies[stored]) == (1, 2)
    # (any other delivery the kill caught after SMTP's answer went out again the same way)
    assert 41 <= sum(copies.values()) <= 40 + MAILER_LANES["batch"].prefetch


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

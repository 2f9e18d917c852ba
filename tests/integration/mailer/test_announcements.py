"""Announcements on the batch lane against real Postgres (and a real SMTP server where a crash
is rehearsed): the expansion reads the API's audience view, and each recipient gets the mail,
under one Message-ID, whatever came before."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Literal

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from devtools.smtp_catcher import read_mailbox
from services.mailer.announcements import Announcements, delivery_message_id
from services.mailer.handler import Mailer, MailerTransaction
from services.mailer.mail import OutgoingMail
from services.mailer.rate_limit import LaneRate, MemoryRateLimiter
from services.mailer.rendering import template_environment
from services.mailer.smtp import (
    MailSender,
    MemorySender,
    RecipientRefused,
    SmtpOptions,
    SmtpSender,
    SmtpUnavailable,
)
from shared.consumer.runtime import MessageContext
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import AnnouncementDelivery, AnnouncementPublished, Audience
from shared.events.envelope import new_envelope
from shared.system_topology import MAILER_LANES
from shared.unsubscribe import UnsubscribeSigner
from tests.integration.mailer.conftest import SmtpServer
from tests.support.events import DEVELOPMENT_SEALER
from tests.support.infra import Infra

pytestmark = pytest.mark.integration
BATCH = MAILER_LANES["batch"]
SIGNER = UnsubscribeSigner(b"k" * 32)


@dataclasses.dataclass
class Lane:
    sender: MailSender
    announcements: Announcements
    pool: AsyncConnectionPool
    schema: str
    api: str
    admin_url: str

    async def run(self, payload: AnnouncementPublished | AnnouncementDelivery) -> None:
        """The handler in its message transaction, as the runtime calls it, under the message
        id the expansion gives a delivery (a redelivery comes back under the same one)."""
        envelope = new_envelope(payload)
        if isinstance(payload, AnnouncementDelivery):
            message_id = delivery_message_id(payload.announcement_id, payload.recipient)
            envelope = new_envelope(payload, message_id=message_id)
        async with PostgresTransactions(self.pool, self.schema, MailerTransaction).begin() as tx:
            context = MessageContext(envelope, payload, 1, BATCH, tx)
            if isinstance(payload, AnnouncementPublished):
                await self.announcements.expand(context, payload)
            else:
                await self.announcements.deliver(context, payload)

    async def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def as_api(self, statement: str, *params: object) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            await conn.execute(f"SET search_path TO {self.api}")
            await conn.execute(statement, params)


def lane_with(
    sender: MailSender, infra: Infra, mailer_pool: AsyncConnectionPool, schema: str, api: str
) -> Lane:
    mailer = Mailer(
        templates=template_environment(),
        sender=sender,
        rate_limiter=MemoryRateLimiter(
            {"batch": LaneRate(refill_per_second=1000.0, capacity=1000.0)}
        ),
        mail_from="Admissions <no-reply@admissions.local>",
        api_public_url="http://portal.example",
        sealer=DEVELOPMENT_SEALER,
    )
    announcements = Announcements(mailer, SIGNER, api_schema=api)
    return Lane(sender, announcements, mailer_pool, schema, api, infra.database_url)


@pytest.fixture
def lane(
    infra: Infra, mailer_schema: str, mailer_pool: AsyncConnectionPool, api_schema: str
) -> Lane:
    return lane_with(MemorySender(), infra, mailer_pool, mailer_schema, api_schema)


def sent(lane: Lane) -> list[OutgoingMail]:
    assert isinstance(lane.sender, MemorySender)
    return lane.sender.sent


def failing(lane: Lane, failure: Exception | None) -> None:
    assert isinstance(lane.sender, MemorySender)
    lane.sender.failure = failure


def delivery(announcement_id: str, recipient: str = "ada@example.org") -> AnnouncementDelivery:
    return AnnouncementDelivery(
        announcement_id=announcement_id, recipient=recipient, subject="Open day", body="Friday."
    )


async def outcome(lane: Lane, announcement_id: str) -> list[tuple[Any, ...]]:
    return await lane.rows(
        "SELECT recipient, outcome FROM announcement_deliveries WHERE announcement_id = %s"
        " ORDER BY recipient",
        announcement_id,
    )


async def test_a_delivery_is_mailed_once_with_its_unsubscribe_link(lane: Lane) -> None:
    announcement_id = str(uuid.uuid4())
    # When the same delivery is handled twice (a redelivery the claim did not catch)
    await lane.run(delivery(announcement_id))
    await lane.run(delivery(announcement_id))
    # Then one mail went out, with a signed link for its recipient, and the ledger says sent
    [mailed] = sent(lane)
    mail = mailed.parsed()
    link = SIGNER.url("http://portal.example", "ada@example.org")
    assert mail["List-Unsubscribe"] == f"<{link}>"
    assert link in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert await outcome(lane, announcement_id) == [("ada@example.org", "sent")]


class MailerKilled(BaseException):
    """The mailer process dying (kill -9): nothing after it runs, its transaction is lost
    (the connection is closed, Postgres rolls it back), and only what it committed stays."""


@dataclasses.dataclass
class KilledInItsFirstSend:
    """A real SMTP sender whose process is killed inside its first send: before the server
    took the mail, or after the server took it but before its answer came back."""

    sender: MailSender
    moment: Literal["before the server took it", "after the server took it"]
    killed: bool = False

    async def send(self, mail: OutgoingMail) -> None:
        if not self.killed:
            self.killed = True
            if self.moment == "after the server took it":
                await self.sender.send(mail)
            raise MailerKilled
        await self.sender.send(mail)


@pytest.mark.parametrize("moment", ["before the server took it", "after the server took it"])
async def test_a_mailer_killed_between_the_ledger_and_smtps_answer_still_mails_the_recipient(
    infra: Infra,
    mailer_schema: str,
    mailer_pool: AsyncConnectionPool,
    api_schema: str,
    smtp_server: SmtpServer,
    moment: Literal["before the server took it", "after the server took it"],
) -> None:
    # Given a mailer on a real SMTP server, killed inside the SMTP call of a delivery (its
    # ledger row and its record of the mail written, the server's answer not yet read)
    smtp = SmtpSender(SmtpOptions(host=smtp_server.host, port=smtp_server.port, timeout=5))
    dying = KilledInItsFirstSend(smtp, moment)
    lane = lane_with(dying, infra, mailer_pool, mailer_schema, api_schema)
    announcement_id = str(uuid.uuid4())
    with pytest.raises(MailerKilled):
        await lane.run(delivery(announcement_id))
    # When the broker redelivers the message it never saw acknowledged (same message id)
    await lane.run(delivery(announcement_id))
    await smtp.close()
    # Then the recipient has the announcement: once, or twice under one Message-ID (the same
    # mail to a receiving system and to the audit), never left out
    mails = read_mailbox(smtp_server.mail_dir)
    assert [m["To"] for m in mails] == ["ada@example.org"] * len(mails)
    expected = f"<{delivery_message_id(announcement_id, 'ada@example.org')}.announcement@"
    assert {str(m["Message-ID"]) for m in mails} == {f"{expected}admissions.local>"}
    assert len(mails) == (2 if moment == "after the server took it" else 1)
    # And the ledger counts it as sent, not failed
    assert await outcome(lane, announcement_id) == [("ada@example.org", "sent")]


async def test_an_unavailable_server_leaves_the_recipient_to_a_replay(lane: Lane) -> None:
    announcement_id = str(uuid.uuid4())
    failing(lane, SmtpUnavailable("down"))
    with pytest.raises(SmtpUnavailable):
        await lane.run(delivery(announcement_id))
    assert await outcome(lane, announcement_id) == []
    # And a replay sends it
    failing(lane, None)
    await lane.run(delivery(announcement_id))
    assert len(sent(lane)) == 1
    assert await outcome(lane, announcement_id) == [("ada@example.org", "sent")]


async def test_a_refused_recipient_is_recorded_and_not_retried(lane: Lane) -> None:
    announcement_id = str(uuid.uuid4())
    failing(lane, RecipientRefused("550 no such user"))
    await lane.run(delivery(announcement_id))  # acknowledged, not dead-lettered
    assert await outcome(lane, announcement_id) == [("ada@example.org", "refused")]


async def test_cancelled_and_unsubscribed_are_skipped_without_mail(lane: Lane) -> None:
    # Given a cancelled announcement, and an applicant who opted out
    cancelled = str(uuid.uuid4())
    await lane.as_api(
        "INSERT INTO announcements (id, subject, body, audience, created_by, cancelled_at)"
        " VALUES (%s, 's', 'b', '{}', 'admin@example.org', now())",
        cancelled,
    )
    await lane.as_api("INSERT INTO announcement_opt_outs (email) VALUES ('quiet@example.org')")
    other = str(uuid.uuid4())
    # When their deliveries come
    await lane.run(delivery(cancelled))
    await lane.run(delivery(other, "quiet@example.org"))
    # Then no mail, and each is recorded as skipped with its reason
    assert sent(lane) == []
    assert await outcome(lane, cancelled) == [("ada@example.org", "cancelled")]
    assert await outcome(lane, other) == [("quiet@example.org", "unsubscribed")]


async def test_the_expansion_writes_one_delivery_per_audience_member_once(lane: Lane) -> None:
    # Given three applicants of a program (one opted out) and one of another
    for email, program in (
        ("a@example.org", "Law"),
        ("b@example.org", "Law"),
        ("c@example.org", "Law"),
        ("d@example.org", "Art"),
    ):
        user = uuid.uuid4()
        await lane.as_api(
            "INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')", user, email
        )
        await lane.as_api(
            "INSERT INTO applications (id, applicant_id, program, personal_statement,"
            " correlation_id) VALUES (%s, %s, %s, 's', 'c')",
            uuid.uuid4(),
            user,
            program,
        )
    await lane.as_api("INSERT INTO announcement_opt_outs (email) VALUES ('c@example.org')")
    announcement_id = str(uuid.uuid4())
    published = AnnouncementPublished(
        announcement_id=announcement_id,
        subject="Law day",
        body="Come.",
        audience=Audience(kind="program", value="Law"),
    )
    # When it is expanded, twice (a redelivery the claim did not catch)
    await lane.run(published)
    await lane.run(published)
    # Then one delivery each for the two who may get it, under ids derived from the pair
    outbox = await lane.rows("SELECT message_id, type, body FROM outbox ORDER BY message_id")
    assert {row[1] for row in outbox} == {"announcement.delivery"}
    assert sorted(row[0] for row in outbox) == sorted(
        delivery_message_id(announcement_id, email) for email in ("a@example.org", "b@example.org")
    )
    assert await lane.rows(
        "SELECT total FROM announcement_runs WHERE announcement_id = %s", announcement_id
    ) == [(2,)]

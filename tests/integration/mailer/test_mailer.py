"""The mailer's handler in the consumer runtime, against real Postgres, RabbitMQ and SMTP."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from devtools.smtp_catcher import read_mailbox
from services.mailer.handler import Mailer, MailerTransaction
from services.mailer.rate_limit import LaneRate, MemoryRateLimiter
from services.mailer.rendering import template_environment
from services.mailer.smtp import RecipientRefused, SmtpOptions, SmtpSender, SmtpUnavailable
from shared.broker.rabbitmq import RabbitBroker
from shared.consumer import policy
from shared.consumer.runtime import Consumer, MessageContext
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import EventPayload, PaymentCompleted
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import MAILER_LANES
from shared.topology import Exchanges, QueueSpec, Topology
from tests.integration.mailer.conftest import REFUSED_DOMAIN, SmtpServer, free_port
from tests.support.amqp import AmqpInspector
from tests.support.events import DEVELOPMENT_SEALER, DEVELOPMENT_VERIFIER, otp_requested, signed
from tests.support.waiting import eventually
from tests.unit.mailer.samples import one_of_each, submitted

SENDER = "Admissions <no-reply@admissions.local>"


def make_mailer(host: str, port: int, timeout: float = 5.0) -> Mailer:
    return Mailer(
        templates=template_environment(),
        sender=SmtpSender(SmtpOptions(host=host, port=port, timeout=timeout)),
        rate_limiter=MemoryRateLimiter(
            {lane: LaneRate(refill_per_second=100.0, capacity=100.0) for lane in MAILER_LANES}
        ),
        mail_from=SENDER,
        api_public_url="http://127.0.0.1:8000",
        sealer=DEVELOPMENT_SEALER,
    )


async def rows(pool: AsyncConnectionPool, query: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as connection:
        return await (await connection.execute(query)).fetchall()


async def handle_directly(
    mailer: Mailer,
    pool: AsyncConnectionPool,
    schema: str,
    spec: QueueSpec,
    payload: EventPayload,
    envelope: Envelope | None = None,
) -> Envelope:
    """The handler in its message transaction, without a broker (as the runtime calls it)."""
    envelope = envelope or new_envelope(payload)
    async with PostgresTransactions(pool, schema, MailerTransaction).begin() as tx:
        context = MessageContext(envelope, payload, 1, spec, tx)
        await mailer.handle(context)
        await tx.add_outbox(context.outgoing)
    return envelope


def namespaced_lane(namespace: str, lane: str) -> QueueSpec:
    spec = MAILER_LANES[lane]
    return dataclasses.replace(spec, name=f"{namespace}.{spec.name}")


async def test_a_mail_is_sent_once_and_its_redelivery_is_deduplicated(
    rabbit: RabbitBroker,
    amqp: AmqpInspector,
    exchanges: Exchanges,
    namespace: str,
    mailer_schema: str,
    mailer_pool: AsyncConnectionPool,
    smtp_server: SmtpServer,
) -> None:
    # Given the medium lane consumed by the mailer's handler through the consumer runtime
    spec = namespaced_lane(namespace, "medium")
    await rabbit.declare(amqp.track(Topology(exchanges, (spec,))))
    consumer = Consumer(
        service="mailer",
        spec=spec,
        exchanges=exchanges,
        broker=rabbit,
        transactions=PostgresTransactions(mailer_pool, mailer_schema, MailerTransaction),
        handler=make_mailer(smtp_server.host, smtp_server.port).handle,
        authenticity=DEVELOPMENT_VERIFIER,
    )
    await consumer.start()
    try:
        # When one application.submitted event is delivered twice (a publisher's retry)
        envelope = new_envelope(submitted(email="ada@example.org"))
        for _ in range(2):
            await rabbit.publish(exchanges.events, envelope.type, signed(envelope))
        await eventually(
            lambda: consumer.outcomes["processed"] + consumer.outcomes["duplicate"] == 2,
            what="both deliveries handled",
        )
    finally:
        await consumer.stop()

    # Then exactly one mail reached the SMTP server, with the event's stable Message-ID
    expected_id = f"<{envelope.message_id}.confirmation@admissions.local>"
    assert consumer.outcomes == {"processed": 1, "duplicate": 1}
    mails = read_mailbox(smtp_server.mail_dir)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Message-ID"] == expected_id
    assert mail["To"] == "ada@example.org"
    assert mail["X-Application-Id"] == "app-1"
    assert mail["X-Email-Template"] == "confirmation"
    assert mail["X-Lane"] == "medium"
    assert mail.get_content_type() == "multipart/alternative"
    # And it is recorded once, the record being the whole announcement (the API reads it
    # through the application_mail view): nothing goes to the outbox
    recorded = await rows(
        mailer_pool, "SELECT message_id_header, template, recipient, lane FROM sent_emails"
    )
    assert recorded == [(expected_id, "confirmation", "ada@example.org", "medium")]
    assert await rows(mailer_pool, "SELECT application_id, template FROM application_mail") == [
        ("app-1", "confirmation")
    ]
    assert await rows(mailer_pool, "SELECT count(*) FROM outbox") == [(0,)]


async def test_a_completed_payment_sends_the_receipt_and_the_completion_mail(
    mailer_schema: str, mailer_pool: AsyncConnectionPool, smtp_server: SmtpServer
) -> None:
    # Given a completed payment on the high lane
    mailer = make_mailer(smtp_server.host, smtp_server.port)
    spec = namespaced_lane(mailer_schema, "high")
    payload = one_of_each()[3]
    assert isinstance(payload, PaymentCompleted)
    # When it is handled twice (the second time without its claim: trimmed by the sweeper)
    envelope = await handle_directly(mailer, mailer_pool, mailer_schema, spec, payload)
    await handle_directly(mailer, mailer_pool, mailer_schema, spec, payload, envelope)
    # Then the applicant got each of the two mails once, each with its own stable Message-ID
    mails = read_mailbox(smtp_server.mail_dir)
    assert sorted((m["X-Email-Template"], m["Message-ID"]) for m in mails) == [
        ("application_complete", f"<{envelope.message_id}.application_complete@admissions.local>"),
        ("receipt", f"<{envelope.message_id}.receipt@admissions.local>"),
    ]
    assert await rows(mailer_pool, "SELECT template FROM application_mail ORDER BY sequence") == [
        ("receipt",),
        ("application_complete",),
    ]


async def test_a_mail_already_recorded_is_not_sent_again_even_without_the_claim(
    mailer_schema: str, mailer_pool: AsyncConnectionPool, smtp_server: SmtpServer
) -> None:
    # Given an OTP mail that was sent and recorded
    mailer = make_mailer(smtp_server.host, smtp_server.port)
    spec = namespaced_lane(mailer_schema, "critical")
    payload = otp_requested("u@example.org", "123456")
    envelope = new_envelope(payload)
    await handle_directly(mailer, mailer_pool, mailer_schema, spec, payload, envelope)
    # When the same event is handled again (its claim trimmed by the sweeper long ago)
    await handle_directly(mailer, mailer_pool, mailer_schema, spec, payload, envelope)
    # Then the SMTP server got it once
    assert len(read_mailbox(smtp_server.mail_dir)) == 1
    assert await rows(mailer_pool, "SELECT count(*) FROM sent_emails") == [(1,)]


async def test_an_smtp_server_that_is_down_is_a_transient_error(
    mailer_schema: str, mailer_pool: AsyncConnectionPool
) -> None:
    # Given an SMTP address nobody listens on
    mailer = make_mailer("127.0.0.1", free_port(), timeout=2.0)
    spec = namespaced_lane(mailer_schema, "critical")
    # When an OTP mail is handled
    with pytest.raises(SmtpUnavailable) as raised:
        await handle_directly(
            mailer, mailer_pool, mailer_schema, spec, otp_requested("u@x.org", "654321")
        )
    # Then the runtime retries it on the lane's policy, and nothing was recorded (rolled back)
    assert isinstance(policy.decide(spec, 1, raised.value), policy.Retry)
    assert await rows(mailer_pool, "SELECT count(*) FROM sent_emails") == [(0,)]
    assert await rows(mailer_pool, "SELECT count(*) FROM outbox") == [(0,)]


async def test_a_recipient_refused_permanently_is_a_domain_rule_violation(
    mailer_schema: str, mailer_pool: AsyncConnectionPool, smtp_server: SmtpServer
) -> None:
    # Given an SMTP server that answers 550 for this recipient
    mailer = make_mailer(smtp_server.host, smtp_server.port)
    spec = namespaced_lane(mailer_schema, "critical")
    payload = otp_requested(f"nobody@{REFUSED_DOMAIN}", "111111")
    # When the mail is handled
    with pytest.raises(RecipientRefused) as raised:
        await handle_directly(mailer, mailer_pool, mailer_schema, spec, payload)
    # Then it is dead-lettered at once, and nothing was stored or recorded
    assert isinstance(policy.decide(spec, 1, raised.value), policy.DeadLetter)
    assert read_mailbox(smtp_server.mail_dir) == []
    assert await rows(mailer_pool, "SELECT count(*) FROM sent_emails") == [(0,)]

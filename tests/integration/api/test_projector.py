"""The projector's handler run by the real consumer runtime on the real Postgres (the broker
is the in-memory double: deliveries are handed to the consumer one by one, in chosen order),
and the status history reading the mail sent from a real mailer schema's view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.api.projector.app import ProjectionTransaction
from services.api.projector.handler import QUEUE, handle
from services.api.settings import ApiSettings
from shared.broker.base import BrokerMessage
from shared.broker.memory import InMemoryBroker
from shared.consumer import policy
from shared.consumer.runtime import Consumer
from shared.db.migrations import grant_select
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import (
    DocumentsRejected,
    DocumentsVerified,
    DocumentVerdict,
    EventPayload,
    PaymentCompleted,
    PaymentInitiated,
)
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import Exchanges, Topology
from tests.integration.api.conftest import Applicant, scalar
from tests.support.database import open_role_pool, service_schema
from tests.support.events import DEVELOPMENT_VERIFIER, signed
from tests.support.infra import Infra
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields


@dataclass
class HandDelivery:
    message: BrokerMessage
    redelivered: bool = False
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True

    async def requeue(self) -> None:
        raise AssertionError("the projector should never need a requeue here")


class Projector:
    def __init__(self, pool: AsyncConnectionPool, schema: str, namespace: str) -> None:
        spec = SYSTEM_TOPOLOGY.queue(QUEUE)
        self.topology = Topology(Exchanges.namespaced(namespace), (spec,))
        self.broker = InMemoryBroker()
        self.consumer = Consumer(
            service=schema,
            spec=spec,
            exchanges=self.topology.exchanges,
            broker=self.broker,
            transactions=PostgresTransactions(pool, schema, ProjectionTransaction),
            handler=handle,
            authenticity=DEVELOPMENT_VERIFIER,
        )

    async def deliver(self, envelope: Envelope) -> None:
        delivery = HandDelivery(signed(envelope))
        await self.consumer.process(delivery)
        assert delivery.acked

    def dead_letters(self) -> list[BrokerMessage]:
        return self.broker.messages(f"{QUEUE}.dlq")


@pytest.fixture
async def mailer_schema(infra: Infra, namespace: str, api_schema: str) -> AsyncIterator[str]:
    """A mailer's schema beside the API's, its ``application_mail`` view granted to the API."""
    async with service_schema(infra, f"{namespace}_mailer", ["services.mailer.migrations"]) as name:
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            await grant_select(admin, api_schema, name, ["application_mail"])
        yield name


@pytest.fixture
def api_settings(api_settings: ApiSettings, mailer_schema: str) -> ApiSettings:
    return api_settings.model_copy(update={"mail_history_schema": mailer_schema})


async def mail_sent(infra: Infra, mailer_schema: str, application_id: str, template: str) -> None:
    """The mailer's own record of a mail, written as the mailer writes it."""
    async with open_role_pool(infra, mailer_schema, max_size=1) as pool, pool.connection() as conn:
        await conn.execute(
            "INSERT INTO sent_emails (message_id_header, template, recipient, lane, application_id)"
            " VALUES (%s, %s, 'alice@example.org', 'medium', %s)",
            (f"<{uuid.uuid4()}.{template}@test>", template, application_id),
        )


@pytest.fixture
async def projector(db: AsyncConnectionPool, api_schema: str, namespace: str) -> Projector:
    projector = Projector(db, api_schema, namespace)
    await projector.broker.declare(projector.topology)
    return projector


@pytest.fixture
async def application_id(client: httpx.AsyncClient, alice: Applicant) -> str:
    response = await client.post(
        "/applications",
        content=multipart(valid_fields(), [FilePart("cv.pdf", PDF)]),
        headers={**alice.headers, "content-type": CONTENT_TYPE},
    )
    assert response.status_code == 202
    return str(response.json()["applicationId"])


def events_for(application_id: str) -> dict[str, EventPayload]:
    email = "alice@example.org"
    verdicts = [DocumentVerdict(document_id="d1", filename="cv.pdf", ok=True)]
    return {
        "verified": DocumentsVerified(
            application_id=application_id, applicant_email=email, documents=verdicts
        ),
        "initiated": PaymentInitiated(
            application_id=application_id,
            applicant_email=email,
            payment_id="pay_1",
            checkout_url="https://psp.test/checkout/pay_1",
            amount_cents=5000,
            currency="EUR",
        ),
        "paid": PaymentCompleted(
            application_id=application_id,
            applicant_email=email,
            payment_id="pay_1",
            amount_cents=5000,
            currency="EUR",
        ),
    }


async def test_the_whole_journey_is_visible_in_the_status(
    client: httpx.AsyncClient,
    alice: Applicant,
    application_id: str,
    projector: Projector,
    db: AsyncConnectionPool,
    infra: Infra,
    mailer_schema: str,
) -> None:
    # Given the services' events for Alice's accepted application, and the mailer's record of
    # the confirmation it sent before the documents were verified
    events = events_for(application_id)
    await mail_sent(infra, mailer_schema, application_id, "confirmation")
    # When the projector receives them in the usual order
    for name in ("verified", "initiated", "paid"):
        await projector.deliver(new_envelope(events[name], correlation_id="corr-1"))
    # Then the status shows completion, the payment and every step of the history
    status = (
        await client.get(f"/applications/{application_id}/status", headers=alice.headers)
    ).json()
    assert (status["status"], status["progress"]) == ("completed", 100)
    assert status["payment"] == {
        "status": "completed",
        "checkoutUrl": "https://psp.test/checkout/pay_1",
        "paymentId": "pay_1",
    }
    assert [(h["status"], h["progress"], h["eventType"]) for h in status["history"]] == [
        ("submitted", 25, "application.submitted"),
        ("verifying", 30, "application.submitted"),
        ("verifying", 30, "email.sent"),
        ("verified", 50, "documents.verified"),
        ("processing_payment", 55, "documents.verified"),
        ("awaiting_payment", 75, "payment.initiated"),
        ("completed", 100, "payment.completed"),
    ]
    assert status["history"][2]["note"] == "e-mail sent: confirmation"
    # And nothing was announced: a completed payment is the completion
    assert await scalar(db, "SELECT count(*) FROM outbox") == 1  # the submission's own
    # And the pay link now answers with the checkout
    checkout = await client.get(f"/payments/checkout/{application_id}", headers=alice.headers)
    assert checkout.json() == {"checkoutUrl": "https://psp.test/checkout/pay_1"}


async def test_mails_sent_later_show_under_the_step_reached_when_they_went(
    client: httpx.AsyncClient,
    alice: Applicant,
    application_id: str,
    projector: Projector,
    infra: Infra,
    mailer_schema: str,
) -> None:
    # Given a completed application
    events = events_for(application_id)
    for name in ("verified", "initiated", "paid"):
        await projector.deliver(new_envelope(events[name]))
    # When the receipt and the completion mail are recorded afterwards
    for template in ("receipt", "application_complete"):
        await mail_sent(infra, mailer_schema, application_id, template)
    # Then they close the history, under the completed step, in the order they were sent
    history = (
        await client.get(f"/applications/{application_id}/status", headers=alice.headers)
    ).json()["history"]
    assert [(h["status"], h["note"]) for h in history[-3:]] == [
        ("completed", "documents verified and fee paid"),
        ("completed", "e-mail sent: receipt"),
        ("completed", "e-mail sent: application_complete"),
    ]
    assert history[-1]["messageId"] is None
    assert datetime.fromisoformat(history[-1]["at"]) <= datetime.now(UTC)


async def test_duplicates_and_late_events_change_nothing(
    application_id: str, projector: Projector, db: AsyncConnectionPool
) -> None:
    events = events_for(application_id)
    paid = new_envelope(events["paid"])
    # Given events out of order, one message delivered twice, one event re-sent under a new id
    for envelope in (
        paid,
        new_envelope(events["verified"]),
        paid,  # redelivery: the runtime's claim skips it
        new_envelope(events["paid"]),  # same fact, new message id: the state machine skips it
        new_envelope(events["initiated"]),  # after completion: terminal
    ):
        await projector.deliver(envelope)
    # Then the application completed once and stays completed
    assert await scalar(db, "SELECT status FROM applications WHERE id = %s", application_id) == (
        "completed"
    )
    completions = "SELECT count(*) FROM application_history WHERE status = 'completed'"
    assert await scalar(db, completions) == 1
    assert projector.consumer.outcomes["duplicate"] == 1
    assert projector.dead_letters() == []


async def test_a_rejection_is_final(
    application_id: str, projector: Projector, db: AsyncConnectionPool
) -> None:
    rejected = DocumentsRejected(
        application_id=application_id,
        applicant_email="alice@example.org",
        documents=[
            DocumentVerdict(document_id="d1", filename="cv.pdf", ok=False, reason="encrypted")
        ],
    )
    await projector.deliver(new_envelope(rejected))
    await projector.deliver(new_envelope(events_for(application_id)["verified"]))
    assert await scalar(db, "SELECT status FROM applications WHERE id = %s", application_id) == (
        "verification_failed"
    )
    note = await scalar(
        db,
        "SELECT note FROM application_history WHERE status = 'verification_failed'",
    )
    assert note == "documents rejected: cv.pdf: encrypted"


async def test_an_event_for_an_unknown_application_is_dead_lettered(
    projector: Projector, api_schema: str, db: AsyncConnectionPool
) -> None:
    # Given an event about an application the API never wrote
    ghost = events_for(str(uuid.uuid4()))["verified"]
    # When it is delivered
    await projector.deliver(new_envelope(ghost))
    # Then it goes straight to the DLQ (a domain rule, not worth retrying), and nothing is written
    [dead] = projector.dead_letters()
    assert dead.headers[policy.ERROR_TYPE] == "DomainRuleViolation"
    assert dead.headers[policy.ERROR_KIND] == "permanent"
    assert await scalar(db, "SELECT count(*) FROM application_history") == 0


async def test_one_batch_holding_every_event_of_an_application_applies_them_in_turn(
    application_id: str, projector: Projector, db: AsyncConnectionPool
) -> None:
    # Given the verdict, the checkout and the payment of one application, and a copy of one
    events = events_for(application_id)
    verified = new_envelope(events["verified"])
    batch = [verified, new_envelope(events["initiated"]), new_envelope(events["paid"]), verified]
    deliveries = [HandDelivery(signed(e)) for e in batch]
    # When they reach the projector as one batch (one transaction)
    await projector.consumer.process_batch(deliveries)
    # Then each handler saw what the one before it wrote: every step once, in order
    assert projector.consumer.batches == {"together": 1}
    assert projector.consumer.outcomes == {"processed": 3, "duplicate": 1}
    assert all(delivery.acked for delivery in deliveries)
    async with db.connection() as conn:
        steps = await (
            await conn.execute(
                "SELECT status FROM application_history WHERE application_id = %s ORDER BY id",
                (application_id,),
            )
        ).fetchall()
    assert [status for (status,) in steps] == [
        "submitted",
        "verifying",
        "verified",
        "processing_payment",
        "awaiting_payment",
        "completed",
    ]


async def test_the_api_role_reads_the_mailers_view_and_nothing_else_of_its_schema(
    db: AsyncConnectionPool, mailer_schema: str
) -> None:
    async with db.connection() as conn:
        view = sql.Identifier(mailer_schema, "application_mail")
        await conn.execute(sql.SQL("SELECT application_id, template FROM {}").format(view))
        for table in ("sent_emails", "outbox", "processed_messages"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(
                    sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(mailer_schema, table))
                )

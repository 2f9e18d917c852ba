"""The projector's handler run by the real consumer runtime on the real Postgres (the broker
is the in-memory double: deliveries are handed to the consumer one by one, in chosen order)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.projector.handler import QUEUE, handle
from shared.broker.base import OutgoingMessage
from shared.broker.memory import InMemoryBroker
from shared.consumer import policy
from shared.consumer.runtime import Consumer
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import (
    ApplicationSubmitted,
    DocumentsRejected,
    DocumentsVerified,
    DocumentVerdict,
    EmailSent,
    EventPayload,
    PaymentCompleted,
    PaymentInitiated,
)
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import Exchanges, Topology
from tests.integration.api.conftest import Applicant, scalar
from tests.support.events import DEVELOPMENT_VERIFIER, signed
from tests.unit.api.multipart import CONTENT_TYPE, PDF, FilePart, multipart, valid_fields


@dataclass
class HandDelivery:
    message: OutgoingMessage
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
            transactions=PostgresTransactions(pool, schema),
            handler=handle,
            authenticity=DEVELOPMENT_VERIFIER,
        )

    async def deliver(self, envelope: Envelope) -> None:
        delivery = HandDelivery(signed(envelope))
        await self.consumer.process(delivery)
        assert delivery.acked

    def dead_letters(self) -> list[OutgoingMessage]:
        return self.broker.messages(f"{QUEUE}.dlq")


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
        "submitted": ApplicationSubmitted(
            application_id=application_id,
            applicant_id=str(uuid.uuid4()),
            applicant_email=email,
            program="MSc",
            documents=[],
        ),
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
        "mailed": EmailSent(
            template="confirmation",
            recipient=email,
            message_id_header="<m1@admissions>",
            lane="medium",
            application_id=application_id,
        ),
    }


async def completed_events(db: AsyncConnectionPool) -> list[dict[str, object]]:
    async with db.connection() as conn:
        rows = await (
            await conn.execute("SELECT body FROM outbox WHERE type = 'application.completed'")
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


async def test_the_whole_journey_is_visible_in_the_status(
    client: httpx.AsyncClient,
    alice: Applicant,
    application_id: str,
    projector: Projector,
    db: AsyncConnectionPool,
) -> None:
    # Given the services' events for Alice's application
    events = events_for(application_id)
    # When the projector receives them in the usual order
    for name in ("submitted", "verified", "initiated", "mailed", "paid"):
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
    assert [(h["status"], h["progress"]) for h in status["history"]] == [
        ("submitted", 25),
        ("verifying", 30),
        ("verified", 50),
        ("processing_payment", 55),
        ("awaiting_payment", 75),
        ("awaiting_payment", 75),
        ("completed", 100),
    ]
    assert status["history"][5]["note"] == "e-mail sent: confirmation"
    # And application.completed was written once, in the application's correlation
    [completed] = await completed_events(db)
    assert completed["payload"] == {
        "application_id": application_id,
        "applicant_email": "alice@example.org",
    }
    assert completed["correlation_id"] == "corr-1"
    # And the pay link now answers with the checkout
    checkout = await client.get(f"/payments/checkout/{application_id}", headers=alice.headers)
    assert checkout.json() == {"checkoutUrl": "https://psp.test/checkout/pay_1"}


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
        new_envelope(events["submitted"]),  # late: cannot move the status back
        new_envelope(events["initiated"]),  # after completion: terminal
    ):
        await projector.deliver(envelope)
    # Then the application completed once and stays completed
    assert await scalar(db, "SELECT status FROM applications WHERE id = %s", application_id) == (
        "completed"
    )
    assert len(await completed_events(db)) == 1
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

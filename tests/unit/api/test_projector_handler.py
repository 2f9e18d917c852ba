"""The projector's handler through a fake unit of work: no Postgres, no broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from services.api.projector.handler import QUEUE, ROUTES, handle
from services.api.projector.state import ApplicationState, HistoryEntry, Transition
from services.api.statuses import Status
from shared.consumer.memory import InMemoryTransactions, MemoryTransaction
from shared.consumer.routing import routed_event_types
from shared.consumer.runtime import MessageContext
from shared.errors import DomainRuleViolation
from shared.events.catalog import (
    DocumentsVerified,
    DocumentVerdict,
    EventPayload,
    PaymentCompleted,
    PaymentInitiated,
)
from shared.events.envelope import new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY
from tests.support.events import otp_requested


@dataclass
class FakeApplications:
    states: dict[uuid.UUID, ApplicationState] = field(default_factory=dict)
    history: list[tuple[uuid.UUID, HistoryEntry, str]] = field(default_factory=list)

    async def load_for_update(self, application_id: uuid.UUID) -> ApplicationState | None:
        return self.states.get(application_id)

    async def save(
        self,
        application_id: uuid.UUID,
        before: ApplicationState,
        transition: Transition,
        event_type: str,
        message_id: uuid.UUID,
    ) -> None:
        self.states[application_id] = transition.state
        self.history.extend((application_id, entry, event_type) for entry in transition.history)


@dataclass
class FakeProjectionWork:
    transaction: MemoryTransaction
    applications: FakeApplications

    async def claim(self, consumer: str, message_id: str) -> bool:
        return await self.transaction.claim(consumer, message_id)

    async def add_outbox(self, envelopes: object) -> None:
        raise AssertionError("the projector emits nothing")


def context(work: FakeProjectionWork, payload: EventPayload) -> MessageContext[FakeProjectionWork]:
    return MessageContext(new_envelope(payload), payload, 1, SYSTEM_TOPOLOGY.queue(QUEUE), work)


@pytest.fixture
def work() -> FakeProjectionWork:
    return FakeProjectionWork(MemoryTransaction(InMemoryTransactions()), FakeApplications())


def accepted(work: FakeProjectionWork) -> str:
    application_id = uuid.uuid4()
    work.applications.states[application_id] = ApplicationState(Status.VERIFYING, 30)
    return str(application_id)


async def test_the_events_of_an_application_complete_it_with_each_step_in_history(
    work: FakeProjectionWork,
) -> None:
    # Given an accepted application
    application_id = accepted(work)
    email = "ada@example.org"
    verdicts = [DocumentVerdict(document_id="d1", filename="cv.pdf", ok=True)]
    # When its documents are verified, its checkout opened and its fee paid
    for payload in (
        DocumentsVerified(application_id=application_id, applicant_email=email, documents=verdicts),
        PaymentInitiated(
            application_id=application_id,
            applicant_email=email,
            payment_id="pay_1",
            checkout_url="https://psp/c/1",
            amount_cents=5000,
            currency="EUR",
        ),
        PaymentCompleted(
            application_id=application_id,
            applicant_email=email,
            payment_id="pay_1",
            amount_cents=5000,
            currency="EUR",
        ),
    ):
        ctx = context(work, payload)
        await handle(ctx)
        assert ctx.outgoing == []  # a completed payment is the completion: nothing to announce
    # Then the application is complete, and the history names each step and its event
    state = work.applications.states[uuid.UUID(application_id)]
    assert (state.status, state.progress, state.checkout_url) == (
        Status.COMPLETED,
        100,
        "https://psp/c/1",
    )
    assert [(entry.status, event) for _, entry, event in work.applications.history] == [
        (Status.VERIFIED, "documents.verified"),
        (Status.PROCESSING_PAYMENT, "documents.verified"),
        (Status.AWAITING_PAYMENT, "payment.initiated"),
        (Status.COMPLETED, "payment.completed"),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            DocumentsVerified(
                application_id=str(uuid.uuid4()), applicant_email="a@b.org", documents=[]
            ),
            "no application",
        ),
        (
            DocumentsVerified(application_id="not-a-uuid", applicant_email="a@b.org", documents=[]),
            "is not a UUID",
        ),
        (otp_requested("a@b.org", "123456"), "has no handler for auth.otp_requested"),
    ],
    ids=["unknown application", "not a uuid", "not routed"],
)
async def test_events_it_cannot_apply_are_domain_rule_violations(
    work: FakeProjectionWork, payload: EventPayload, reason: str
) -> None:
    # When the handler meets an event about no application of ours, or of a type it has no route for
    with pytest.raises(DomainRuleViolation, match=reason):
        await handle(context(work, payload))
    # Then nothing was written (the runtime dead-letters it as permanent)
    assert work.applications.history == []


def test_the_projector_routes_exactly_the_events_its_queue_is_bound_to() -> None:
    assert routed_event_types(ROUTES) == set(SYSTEM_TOPOLOGY.queue(QUEUE).bindings)

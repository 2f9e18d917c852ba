"""The payments handler through a fake unit of work and a fake provider: no Postgres, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from services.payments.domain import Fee, Payment
from services.payments.handler import PaymentHandler, PaymentNotRecordedYet
from services.payments.provider import Checkout
from shared.consumer.memory import InMemoryTransactions, MemoryTransaction
from shared.consumer.runtime import Exhausted, MessageContext
from shared.events.catalog import (
    DocumentsVerified,
    DocumentVerdict,
    EventPayload,
    PaymentWebhookReceived,
)
from shared.events.envelope import new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY

FEE = Fee(5000, "EUR")


@dataclass
class FakePayments:
    rows: dict[str, Payment] = field(default_factory=dict)
    parked: list[PaymentWebhookReceived] = field(default_factory=list)

    async def exists(self, application_id: str) -> bool:
        return application_id in self.rows

    async def lock(self, application_id: str) -> Payment | None:
        return self.rows.get(application_id)

    async def insert(self, payment: Payment) -> bool:
        if payment.application_id in self.rows:
            return False
        self.rows[payment.application_id] = payment
        return True

    async def update_status(self, payment: Payment) -> None:
        self.rows[payment.application_id] = replace(payment)

    async def serialize(self, application_id: str) -> None:
        """One process, one task at a time in these tests: nothing to serialise."""

    async def park_webhook(self, webhook: PaymentWebhookReceived) -> None:
        self.parked.append(webhook)

    async def take_parked_webhooks(self, application_id: str) -> list[PaymentWebhookReceived]:
        taken = [w for w in self.parked if w.application_id == application_id]
        self.parked = [w for w in self.parked if w.application_id != application_id]
        return taken


class FakePaymentsWork(MemoryTransaction):
    def __init__(self, payments: FakePayments) -> None:
        super().__init__(InMemoryTransactions())
        self.payments = payments


class Provider:
    """Makes one checkout per idempotency key, as a real provider does."""

    def __init__(self) -> None:
        self.checkouts: dict[str, Checkout] = {}

    async def create_checkout(
        self, application_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Checkout:
        return self.checkouts.setdefault(
            idempotency_key, Checkout(f"pay-{application_id}", f"https://psp/{application_id}")
        )


def context(payments: FakePayments, payload: EventPayload) -> MessageContext[Any]:
    queue = SYSTEM_TOPOLOGY.queue("payments.applications")
    return MessageContext(new_envelope(payload), payload, 1, queue, FakePaymentsWork(payments))


VERIFIED = DocumentsVerified(
    application_id="app-1",
    applicant_email="ada@example.org",
    documents=[DocumentVerdict(document_id="d1", filename="cv.pdf", ok=True)],
)


def webhook(status: str, event_id: str = "evt-1") -> PaymentWebhookReceived:
    return PaymentWebhookReceived(
        provider_event_id=event_id,
        payment_id="pay-app-1",
        application_id="app-1",
        applicant_email="ada@example.org",
        status=status,
    )


async def test_verified_documents_open_one_checkout_and_a_paid_webhook_completes_it() -> None:
    payments, handler = FakePayments(), PaymentHandler(Provider(), FEE)
    # When the documents are verified (twice: a resent event), then the provider says paid
    started, again = context(payments, VERIFIED), context(payments, VERIFIED)
    paid = context(payments, webhook("paid"))
    for ctx in (started, again, paid):
        await handler(ctx)
    # Then one checkout was opened and announced, and the payment completed once
    assert [e.type for e in started.outgoing] == ["payment.initiated"]
    assert again.outgoing == []
    assert [e.type for e in paid.outgoing] == ["payment.completed"]
    assert paid.outgoing[0].payload["payment_id"] == "pay-app-1"
    assert payments.rows["app-1"].status == "completed"


async def test_a_webhook_out_of_attempts_before_the_checkout_is_parked_then_settles() -> None:
    payments, handler = FakePayments(), PaymentHandler(Provider(), FEE)
    # Given the provider's webhook before the payment is recorded here: not yet, retried
    early = webhook("paid")
    with pytest.raises(PaymentNotRecordedYet) as not_yet:
        await handler(context(payments, early))
    # When its attempts are used up, the queue's on_exhausted hook parks it
    last = context(payments, early)
    await handler.on_exhausted(last, Exhausted(not_yet.value, 5))
    assert payments.parked == [early] and last.outgoing == []
    # When the documents' verdict opens the checkout
    started = context(payments, VERIFIED)
    await handler(started)
    # Then the parked outcome settles the payment in the same unit of work
    assert [e.type for e in started.outgoing] == ["payment.initiated", "payment.completed"]
    assert payments.parked == []

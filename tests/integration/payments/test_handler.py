"""The payments handler against the real Postgres, with a fake provider."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from services.payments.domain import Fee
from services.payments.handler import PaymentHandler, PaymentNotRecordedYet, PaymentsTransaction
from services.payments.provider import (
    Checkout,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from shared.consumer import policy
from shared.consumer.runtime import Exhausted, Handler, MessageContext
from shared.db.transactions import PostgresTransactions
from shared.errors import TransientError
from shared.events.catalog import (
    DocumentsVerified,
    DocumentVerdict,
    EventPayload,
    PaymentWebhookReceived,
    parse_payload,
)
from shared.events.envelope import Envelope, new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY

QUEUE = SYSTEM_TOPOLOGY.queue("payments.applications")
FEE = Fee(5000, "EUR")


@dataclass
class FakeProvider:
    """Keeps one checkout per idempotency key, like a real provider; fails on request."""

    failures: list[ProviderError] = field(default_factory=list)
    calls: list[tuple[str, int, str, str]] = field(default_factory=list)
    checkouts: dict[str, Checkout] = field(default_factory=dict)

    async def create_checkout(
        self, application_id: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Checkout:
        self.calls.append((application_id, amount_cents, currency, idempotency_key))
        if self.failures:
            raise self.failures.pop(0)
        if idempotency_key not in self.checkouts:
            payment_id = f"pay_{uuid.uuid4().hex[:8]}"
            self.checkouts[idempotency_key] = Checkout(payment_id, f"http://psp/{payment_id}")
        return self.checkouts[idempotency_key]


class Payments:
    """Runs the handler the way the consumer runtime does: one transaction per message; when
    the queue's retry policy says the attempts are used up, the queue's on_exhausted hook in a
    transaction of its own."""

    def __init__(self, pool: AsyncConnectionPool, schema: str, provider: FakeProvider) -> None:
        self.pool = pool
        self.transactions = PostgresTransactions(pool, schema, PaymentsTransaction)
        self.provider = provider
        self.handler = PaymentHandler(provider, FEE)

    async def deliver(self, payload: EventPayload, attempt: int = 1) -> list[Envelope]:
        envelope = new_envelope(payload)
        parsed = parse_payload(envelope.type, envelope.version, envelope.payload)
        try:
            return await self._run(self.handler, envelope, parsed, attempt)
        except Exception as error:
            decision = policy.decide(QUEUE, attempt, error)
            if not (isinstance(decision, policy.DeadLetter) and decision.kind == policy.EXHAUSTED):
                raise
            exhausted = Exhausted(error, attempt)

            async def give_up(ctx: MessageContext[Any]) -> None:
                await self.handler.on_exhausted(ctx, exhausted)

            return await self._run(give_up, envelope, parsed, attempt)

    async def _run(
        self, handler: Handler[Any], envelope: Envelope, parsed: EventPayload, attempt: int
    ) -> list[Envelope]:
        async with self.transactions.begin() as tx:
            ctx = MessageContext(envelope, parsed, attempt, QUEUE, tx)
            await handler(ctx)
            await tx.add_outbox(ctx.outgoing)
        return ctx.outgoing

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query)).fetchall()

    async def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.rows("SELECT type, body FROM outbox ORDER BY id")
        return [(kind, json.loads(body)["payload"]) for kind, body in rows]


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def payments(
    payments_pool: AsyncConnectionPool, payments_schema: str, provider: FakeProvider
) -> Payments:
    return Payments(payments_pool, payments_schema, provider)


def verified(application_id: str = "app-1") -> DocumentsVerified:
    return DocumentsVerified(
        application_id=application_id,
        applicant_email="ada@example.org",
        documents=[DocumentVerdict(document_id="d1", filename="t.pdf", ok=True)],
    )


def webhook(payment_id: str, status: str = "paid", event_id: str | None = None) -> Any:
    return PaymentWebhookReceived(
        provider_event_id=event_id or f"evt_{payment_id}_{status}",
        payment_id=payment_id,
        application_id="app-1",
        applicant_email="ada@example.org",
        status=status,
        failure_reason="card declined" if status == "failed" else None,
    )


async def test_documents_verified_initiates_one_payment(
    payments: Payments, provider: FakeProvider
) -> None:
    # Given a verified application / When payments handles it, and another message about it
    await payments.deliver(verified())
    await payments.deliver(verified())
    # Then the provider was asked once, with the application id as idempotency key
    assert provider.calls == [("app-1", 5000, "EUR", "app-1")]
    checkout = provider.checkouts["app-1"]
    # And one payment.initiated carries the checkout
    assert await payments.outbox() == [
        (
            "payment.initiated",
            {
                "application_id": "app-1",
                "applicant_email": "ada@example.org",
                "payment_id": checkout.payment_id,
                "checkout_url": checkout.checkout_url,
                "amount_cents": 5000,
                "currency": "EUR",
            },
        )
    ]
    assert await payments.rows("SELECT status, payment_id, amount_cents FROM payments") == [
        ("initiated", checkout.payment_id, 5000)
    ]


async def test_a_paid_webhook_twice_completes_the_payment_once(payments: Payments) -> None:
    # Given an initiated payment
    [initiated] = await payments.deliver(verified())
    payment_id = initiated.payload["payment_id"]
    # When the paid webhook arrives twice (the provider redelivered it)
    first = await payments.deliver(webhook(payment_id))
    second = await payments.deliver(webhook(payment_id))
    # Then exactly one payment.completed was emitted
    assert [e.type for e in first] == ["payment.completed"]
    assert second == []
    kinds = [kind for kind, _ in await payments.outbox()]
    assert kinds == ["payment.initiated", "payment.completed"]
    assert await payments.rows("SELECT status, settled_by_event FROM payments") == [
        ("completed", f"evt_{payment_id}_paid")
    ]


async def test_concurrent_paid_webhooks_complete_the_payment_once(payments: Payments) -> None:
    # Given an initiated payment
    [initiated] = await payments.deliver(verified())
    payment_id = initiated.payload["payment_id"]
    # When six copies of the paid webhook are handled at the same time
    results = await asyncio.gather(*(payments.deliver(webhook(payment_id)) for _ in range(6)))
    # Then the row lock lets exactly one of them complete it
    assert sum(len(emitted) for emitted in results) == 1
    kinds = [kind for kind, _ in await payments.outbox()]
    assert kinds.count("payment.completed") == 1


async def test_a_failed_webhook_fails_the_payment_once(payments: Payments) -> None:
    [initiated] = await payments.deliver(verified())
    payment_id = initiated.payload["payment_id"]
    await payments.deliver(webhook(payment_id, "failed"))
    await payments.deliver(webhook(payment_id, "failed"))
    # A late "paid" for a failed payment changes nothing either
    await payments.deliver(webhook(payment_id, "paid"))
    outbox = await payments.outbox()
    assert [kind for kind, _ in outbox] == ["payment.initiated", "payment.failed"]
    assert outbox[1][1]["reason"] == "card declined"
    assert await payments.rows("SELECT status, failure_reason FROM payments") == [
        ("failed", "card declined")
    ]


async def test_a_provider_outage_before_the_last_attempt_is_retried(
    payments: Payments, provider: FakeProvider
) -> None:
    # Given a provider that is down
    provider.failures.append(ProviderUnavailable("payment provider answered 503"))
    # When the first attempt runs / Then the error is transient and nothing is written
    with pytest.raises(TransientError):
        await payments.deliver(verified(), attempt=1)
    assert await payments.outbox() == []
    assert await payments.rows("SELECT * FROM payments") == []


async def test_a_provider_outage_on_the_last_attempt_fails_the_payment(
    payments: Payments, provider: FakeProvider
) -> None:
    # Given a provider still down on the queue's last attempt
    provider.failures.append(ProviderUnavailable("payment provider answered 503"))
    # When that attempt runs
    emitted = await payments.deliver(verified(), attempt=QUEUE.max_attempts)
    # Then the payment is recorded as failed and payment.failed says why
    assert [e.type for e in emitted] == ["payment.failed"]
    assert emitted[0].payload["reason"] == (
        f"payment provider answered 503 (gave up after {QUEUE.max_attempts} attempts)"
    )
    assert await payments.rows("SELECT status, payment_id FROM payments") == [("failed", None)]


async def test_a_refused_checkout_fails_the_payment_at_once(
    payments: Payments, provider: FakeProvider
) -> None:
    provider.failures.append(ProviderRejected("payment provider refused the checkout (422)"))
    emitted = await payments.deliver(verified(), attempt=1)
    assert [e.type for e in emitted] == ["payment.failed"]
    assert emitted[0].payload["reason"] == "payment provider refused the checkout (422)"


async def test_a_webhook_before_its_payment_is_recorded_is_retried(payments: Payments) -> None:
    with pytest.raises(PaymentNotRecordedYet):
        await payments.deliver(webhook("pay_unknown"))
    assert await payments.outbox() == []


async def test_a_webhook_out_of_retries_waits_for_its_payment_and_then_settles_it(
    payments: Payments, provider: FakeProvider
) -> None:
    # Given the provider made (and, auto-paying, paid) a checkout whose answer we lost, so the
    # paid webhook comes before our payment row and runs out of retries
    checkout = await provider.create_checkout("app-1", 5000, "EUR", "app-1")
    emitted = await payments.deliver(webhook(checkout.payment_id), attempt=QUEUE.max_attempts)
    # Then it is not dead-lettered: it is parked, nothing is settled yet
    assert emitted == []
    assert await payments.rows("SELECT application_id FROM early_webhooks") == [("app-1",)]
    # When the documents.verified retry finally records the payment
    emitted = await payments.deliver(verified(), attempt=3)
    # Then the parked webhook settles it in the same transaction, exactly once
    assert [e.type for e in emitted] == ["payment.initiated", "payment.completed"]
    assert await payments.rows("SELECT status FROM payments") == [("completed",)]
    assert await payments.rows("SELECT * FROM early_webhooks") == []


# --- issue 14, item 10: a parked paid webhook when the payment's last attempt fails ----------


async def test_a_parked_paid_webhook_settles_a_payment_whose_start_gave_up(
    payments: Payments, provider: FakeProvider
) -> None:
    # Given the provider made and (auto-paying) paid a checkout whose answer we lost; its paid
    # webhook ran out of retries before our payment row existed and was parked
    checkout = await provider.create_checkout("app-1", 5000, "EUR", "app-1")
    await payments.deliver(webhook(checkout.payment_id), attempt=QUEUE.max_attempts)
    assert await payments.rows("SELECT application_id FROM early_webhooks") == [("app-1",)]
    # When the provider is down on documents.verified's last attempt too
    provider.failures.append(ProviderUnavailable("payment provider answered 503"))
    emitted = await payments.deliver(verified(), attempt=QUEUE.max_attempts)
    # Then the money the provider took is not orphaned: the payment is completed by that
    # webhook, and the applicant hears the truth (payment.completed, not payment.failed)
    assert [e.type for e in emitted] == ["payment.completed"]
    assert emitted[0].payload["payment_id"] == checkout.payment_id
    assert await payments.rows("SELECT status, payment_id FROM payments") == [
        ("completed", checkout.payment_id)
    ]
    assert await payments.rows("SELECT * FROM early_webhooks") == []


async def test_a_parked_failed_webhook_leaves_a_payment_whose_start_gave_up_failed(
    payments: Payments, provider: FakeProvider
) -> None:
    checkout = await provider.create_checkout("app-1", 5000, "EUR", "app-1")
    await payments.deliver(webhook(checkout.payment_id, "failed"), attempt=QUEUE.max_attempts)
    provider.failures.append(ProviderUnavailable("payment provider answered 503"))
    emitted = await payments.deliver(verified(), attempt=QUEUE.max_attempts)
    assert [e.type for e in emitted] == ["payment.failed"]
    assert await payments.rows("SELECT status FROM payments") == [("failed",)]
    assert await payments.rows("SELECT * FROM early_webhooks") == []

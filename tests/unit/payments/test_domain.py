"""The payment state machine: each webhook moves a payment at most once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.payments.domain import Fee, Payment, fail_to_start, settle, start
from services.payments.provider import Checkout
from shared.errors import DomainRuleViolation
from shared.events.catalog import (
    DocumentsVerified,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentWebhookReceived,
)

FEE = Fee(5000, "EUR")
VERIFIED = DocumentsVerified(application_id="app-1", applicant_email="a@example.org", documents=[])


def initiated() -> Payment:
    payment, _ = start(VERIFIED, Checkout("pay_1", "http://psp/checkout/pay_1"), FEE)
    return payment


def webhook(status: str, payment_id: str = "pay_1") -> PaymentWebhookReceived:
    return PaymentWebhookReceived(
        provider_event_id=f"evt_{payment_id}_{status}",
        payment_id=payment_id,
        application_id="app-1",
        applicant_email="a@example.org",
        status=status,
        failure_reason="declined by the payer" if status == "failed" else None,
    )


def test_starting_announces_the_checkout_and_the_fee() -> None:
    payment, event = start(VERIFIED, Checkout("pay_1", "http://psp/checkout/pay_1"), FEE)
    assert payment.status == "initiated"
    assert event == PaymentInitiated(
        application_id="app-1",
        applicant_email="a@example.org",
        payment_id="pay_1",
        checkout_url="http://psp/checkout/pay_1",
        amount_cents=5000,
        currency="EUR",
    )


def test_failing_to_start_records_the_reason() -> None:
    payment, event = fail_to_start(VERIFIED, FEE, "provider down")
    assert (payment.status, payment.payment_id, payment.failure_reason) == (
        "failed",
        None,
        "provider down",
    )
    assert event == PaymentFailed(
        application_id="app-1", applicant_email="a@example.org", reason="provider down"
    )


def test_paid_completes_an_initiated_payment() -> None:
    settlement = settle(initiated(), webhook("paid"))
    assert settlement.payment is not None
    assert settlement.payment.status == "completed"
    assert settlement.payment.settled_by_event == "evt_pay_1_paid"
    assert isinstance(settlement.event, PaymentCompleted)
    assert (settlement.event.amount_cents, settlement.event.currency) == (5000, "EUR")


def test_failed_fails_an_initiated_payment_with_the_providers_reason() -> None:
    settlement = settle(initiated(), webhook("failed"))
    assert settlement.payment is not None and settlement.payment.status == "failed"
    assert settlement.event == PaymentFailed(
        application_id="app-1", applicant_email="a@example.org", reason="declined by the payer"
    )


@pytest.mark.parametrize(
    ("status", "webhook_status"),
    [("completed", "paid"), ("failed", "failed"), ("completed", "failed"), ("failed", "paid")],
)
def test_a_settled_payment_does_not_move_again(status: str, webhook_status: str) -> None:
    payment = replace(initiated(), status=status)  # type: ignore[arg-type]
    settlement = settle(payment, webhook(webhook_status))
    assert settlement.payment is None
    assert settlement.event is None
    assert settlement.note


def test_a_webhook_for_another_payment_is_refused() -> None:
    with pytest.raises(DomainRuleViolation):
        settle(initiated(), webhook("paid", payment_id="pay_other"))

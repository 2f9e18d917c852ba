"""The payment of one application as a small state machine, with no I/O.

    (none) ──checkout created──> initiated ──webhook paid──> completed
       │                             └─────webhook failed──> failed
       ├──provider gave up / refused──────────────────────> failed
       └──provider gave up, but its paid webhook came first─> completed

The last path: our checkout call's answers were lost while the provider made the checkout and
took the money; its webhook, with no payment row to settle, was parked. Failing the payment
then would orphan the money and tell the applicant a lie: the webhook settles it instead.

completed and failed are final: a later webhook for the same payment changes nothing and
emits nothing (providers deliver webhooks at least once, and may send them twice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from services.payments.provider import Checkout
from shared.errors import DomainRuleViolation
from shared.events.catalog import (
    DocumentsVerified,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentWebhookReceived,
)

Status = Literal["initiated", "completed", "failed"]


@dataclass(frozen=True)
class Fee:
    amount_cents: int
    currency: str


@dataclass(frozen=True)
class Payment:
    application_id: str
    applicant_email: str
    status: Status
    amount_cents: int
    currency: str
    payment_id: str | None = None
    checkout_url: str | None = None
    failure_reason: str | None = None
    settled_by_event: str | None = None


@dataclass(frozen=True)
class Settlement:
    """What a webhook does: the payment's new state and event, or a note on why nothing."""

    payment: Payment | None = None
    event: PaymentCompleted | PaymentFailed | None = None
    note: str | None = None


def start(
    verified: DocumentsVerified, checkout: Checkout, fee: Fee
) -> tuple[Payment, PaymentInitiated]:
    payment = Payment(
        application_id=verified.application_id,
        applicant_email=verified.applicant_email,
        status="initiated",
        amount_cents=fee.amount_cents,
        currency=fee.currency,
        payment_id=checkout.payment_id,
        checkout_url=checkout.checkout_url,
    )
    event = PaymentInitiated(
        application_id=payment.application_id,
        applicant_email=payment.applicant_email,
        payment_id=checkout.payment_id,
        checkout_url=checkout.checkout_url,
        amount_cents=fee.amount_cents,
        currency=fee.currency,
    )
    return payment, event


def fail_to_start(
    verified: DocumentsVerified, fee: Fee, reason: str
) -> tuple[Payment, PaymentFailed]:
    payment = Payment(
        application_id=verified.application_id,
        applicant_email=verified.applicant_email,
        status="failed",
        amount_cents=fee.amount_cents,
        currency=fee.currency,
        failure_reason=reason,
    )
    event = PaymentFailed(
        application_id=payment.application_id,
        applicant_email=payment.applicant_email,
        reason=reason,
    )
    return payment, event


def give_up_starting(
    verified: DocumentsVerified,
    fee: Fee,
    reason: str,
    parked: list[PaymentWebhookReceived],
) -> tuple[Payment, PaymentCompleted | PaymentFailed]:
    """The checkout could not be created (``reason``): a failed payment, unless a webhook
    parked for this application says the provider was paid."""
    paid = next((webhook for webhook in parked if webhook.status == "paid"), None)
    if paid is None:
        return fail_to_start(verified, fee, reason)
    # As if the checkout's answer had arrived: a payment initiated with the webhook's id,
    # settled by the webhook.
    initiated = Payment(
        application_id=verified.application_id,
        applicant_email=verified.applicant_email,
        status="initiated",
        amount_cents=fee.amount_cents,
        currency=fee.currency,
        payment_id=paid.payment_id,
    )
    settlement = settle(initiated, paid)
    assert settlement.payment is not None and isinstance(settlement.event, PaymentCompleted)
    return settlement.payment, settlement.event


def settle(payment: Payment, webhook: PaymentWebhookReceived) -> Settlement:
    if webhook.payment_id != payment.payment_id:
        raise DomainRuleViolation(
            f"webhook for payment {webhook.payment_id} but application "
            f"{payment.application_id} is paying with {payment.payment_id}"
        )
    if payment.status == "initiated":
        if webhook.status == "paid":
            return Settlement(
                payment=replace(
                    payment, status="completed", settled_by_event=webhook.provider_event_id
                ),
                event=PaymentCompleted(
                    application_id=payment.application_id,
                    applicant_email=payment.applicant_email,
                    payment_id=webhook.payment_id,
                    amount_cents=payment.amount_cents,
                    currency=payment.currency,
                ),
            )
        reason = webhook.failure_reason or "the payment failed"
        return Settlement(
            payment=replace(
                payment,
                status="failed",
                failure_reason=reason,
                settled_by_event=webhook.provider_event_id,
            ),
            event=PaymentFailed(
                application_id=payment.application_id,
                applicant_email=payment.applicant_email,
                reason=reason,
            ),
        )
    if payment.status == "completed" and webhook.status == "paid":
        return Settlement(note="already completed: duplicate webhook ignored")
    if payment.status == "failed" and webhook.status == "failed":
        return Settlement(note="already failed: duplicate webhook ignored")
    return Settlement(
        note=f"webhook says {webhook.status} but the payment is already {payment.status}: "
        "ignored, needs an operator (a refund if money was taken)"
    )

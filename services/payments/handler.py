"""payments.applications: documents.verified -> a checkout; the provider's webhook -> the
payment's outcome."""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from services.payments import domain
from services.payments.domain import Fee, Payment
from services.payments.provider import (
    Checkout,
    PaymentProvider,
    ProviderRejected,
)
from services.payments.repository import Payments, PostgresPayments
from shared.consumer.routing import ExhaustedRoute, Route, routed, routed_on_exhausted
from shared.consumer.runtime import Exhausted, MessageContext
from shared.consumer.transaction import Transaction
from shared.db.transactions import PostgresTransaction
from shared.errors import TransientError
from shared.events.catalog import DocumentsVerified, EventPayload, PaymentWebhookReceived

log = structlog.get_logger("payments.handler")


class PaymentNotRecordedYet(TransientError):
    """A webhook for an application whose checkout is not committed here yet: the provider
    can answer (and an auto-paying sandbox can pay) before our transaction commits, or the
    documents.verified message is still being retried. Later, the row will be there."""


class PaymentsWork(Transaction, Protocol):
    """The payments' unit of work: the message's transaction and the payments in it."""

    @property
    def payments(self) -> Payments: ...


class PaymentsTransaction(PostgresTransaction):
    @property
    def payments(self) -> PostgresPayments:
        return PostgresPayments(self.connection)


class PaymentHandler:
    def __init__(self, provider: PaymentProvider, fee: Fee, simulated_ms: int = 0) -> None:
        self.provider = provider
        self.fee = fee
        self.simulated_ms = simulated_ms
        self.routes: dict[type[EventPayload], Route[PaymentsWork]] = {
            DocumentsVerified: self.start_payment,
            PaymentWebhookReceived: self.settle_payment,
        }
        self._route = routed(self.routes)
        self.exhausted_routes: dict[type[EventPayload], ExhaustedRoute[PaymentsWork]] = {
            DocumentsVerified: self.payment_never_started,
            PaymentWebhookReceived: self.park_webhook,
        }
        self.on_exhausted = routed_on_exhausted(self.exhausted_routes)

    async def __call__(self, ctx: MessageContext[PaymentsWork]) -> None:
        await self._route(ctx)

    async def start_payment(
        self, ctx: MessageContext[PaymentsWork], verified: DocumentsVerified
    ) -> None:
        payments = ctx.tx.payments
        if await payments.exists(verified.application_id):
            log.info("payment already started", application_id=verified.application_id)
            return
        try:
            checkout = await self.create_checkout(verified.application_id)
        except ProviderRejected as refused:  # this checkout will never be made: no retry
            await self.give_up_starting(ctx, verified, str(refused))
            return
        # Any other ProviderError is transient: the runtime retries it on the queue's tiers,
        # and calls ``payment_never_started`` when they are used up.
        payment, initiated = domain.start(verified, checkout, self.fee)
        await payments.serialize(verified.application_id)
        if await payments.insert(payment):
            ctx.emit(initiated)
            # The provider may have paid (and its webhook given up waiting) already.
            for webhook in await payments.take_parked_webhooks(payment.application_id):
                payment = await self.apply(ctx, payment, webhook)
        log.info(
            "payment initiated",
            application_id=verified.application_id,
            payment_id=checkout.payment_id,
        )

    async def payment_never_started(
        self, ctx: MessageContext[PaymentsWork], verified: DocumentsVerified, why: Exhausted
    ) -> None:
        """The provider stayed down for longer than every retry (on_exhausted)."""
        await self.give_up_starting(ctx, verified, str(why))

    async def give_up_starting(
        self, ctx: MessageContext[PaymentsWork], verified: DocumentsVerified, reason: str
    ) -> None:
        # Dead-lettering would leave the application "verified" for ever, its applicant never
        # told. The honest outcome is a failed payment: the application reaches
        # payment_failed and the applicant hears. Unless the provider was paid all the same:
        # its parked webhook settles it.
        payments = ctx.tx.payments
        await payments.serialize(verified.application_id)
        parked = await payments.take_parked_webhooks(verified.application_id)
        payment, outcome = domain.give_up_starting(verified, self.fee, reason, parked)
        if await payments.insert(payment):
            ctx.emit(outcome)
        log.error(
            "payment could not be started",
            application_id=verified.application_id,
            reason=reason,
            outcome=outcome.event_type,
        )

    async def create_checkout(self, application_id: str) -> Checkout:
        if self.simulated_ms:
            await asyncio.sleep(self.simulated_ms / 1000)
        # The application id as idempotency key: a retry after a crash or a timeout gets the
        # checkout the provider already made, never a second one.
        return await self.provider.create_checkout(
            application_id, self.fee.amount_cents, self.fee.currency, application_id
        )

    async def settle_payment(
        self, ctx: MessageContext[PaymentsWork], webhook: PaymentWebhookReceived
    ) -> None:
        payments = ctx.tx.payments
        await payments.serialize(webhook.application_id)
        payment = await payments.lock(webhook.application_id)
        if payment is None:
            raise PaymentNotRecordedYet(
                f"no payment recorded for application {webhook.application_id} yet"
            )
        await self.apply(ctx, payment, webhook)

    async def park_webhook(
        self, ctx: MessageContext[PaymentsWork], webhook: PaymentWebhookReceived, _: Exhausted
    ) -> None:
        """Out of retries, but the payment is still coming (its checkout call is being
        retried): dead-lettering would lose the provider's outcome. Park the webhook;
        recording the payment settles it (on_exhausted)."""
        payments = ctx.tx.payments
        await payments.serialize(webhook.application_id)
        if (payment := await payments.lock(webhook.application_id)) is not None:
            await self.apply(ctx, payment, webhook)  # recorded since the last attempt failed
            return
        await payments.park_webhook(webhook)
        log.warning(
            "webhook parked until the payment is recorded",
            application_id=webhook.application_id,
            provider_event_id=webhook.provider_event_id,
        )

    async def apply(
        self,
        ctx: MessageContext[PaymentsWork],
        payment: Payment,
        webhook: PaymentWebhookReceived,
    ) -> Payment:
        """Settle ``payment`` with ``webhook`` in the message's transaction; the payment as it
        is now."""
        settlement = domain.settle(payment, webhook)
        if settlement.payment is not None:
            await ctx.tx.payments.update_status(settlement.payment)
        if settlement.event is not None:
            ctx.emit(settlement.event)
        log.info(
            settlement.event.event_type if settlement.event else "webhook ignored",
            application_id=webhook.application_id,
            payment_id=webhook.payment_id,
            provider_event_id=webhook.provider_event_id,
            note=settlement.note,
        )
        return settlement.payment or payment

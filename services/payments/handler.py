"""payments.applications: documents.verified -> a checkout; the provider's webhook -> the
payment's outcome."""

from __future__ import annotations

import asyncio

import structlog

from services.payments import domain, repository
from services.payments.domain import Fee
from services.payments.provider import (
    Checkout,
    PaymentProvider,
    ProviderError,
    ProviderRejected,
)
from shared.consumer.runtime import Handler, MessageContext
from shared.db.transactions import PostgresTransaction
from shared.errors import DomainRuleViolation, TransientError
from shared.events.catalog import DocumentsVerified, PaymentWebhookReceived

log = structlog.get_logger("payments.handler")


class PaymentNotRecordedYet(TransientError):
    """A webhook for an application whose checkout is not committed here yet: the provider
    can answer (and an auto-paying sandbox can pay) before our transaction commits, or the
    documents.verified message is still being retried. Later, the row will be there."""


class PaymentHandler:
    def __init__(self, provider: PaymentProvider, fee: Fee, simulated_ms: int = 0) -> None:
        self.provider = provider
        self.fee = fee
        self.simulated_ms = simulated_ms

    async def __call__(self, ctx: MessageContext[PostgresTransaction]) -> None:
        payload = ctx.payload
        if isinstance(payload, DocumentsVerified):
            await self.start_payment(ctx, payload)
        elif isinstance(payload, PaymentWebhookReceived):
            await self.settle_payment(ctx, payload)
        else:
            raise DomainRuleViolation(f"payments does not handle {ctx.envelope.type}")

    async def start_payment(
        self, ctx: MessageContext[PostgresTransaction], verified: DocumentsVerified
    ) -> None:
        conn = ctx.tx.connection
        if await repository.exists(conn, verified.application_id):
            log.info("payment already started", application_id=verified.application_id)
            return
        try:
            checkout = await self.create_checkout(verified.application_id)
        except ProviderError as error:
            last_attempt = ctx.attempt >= ctx.queue.max_attempts
            if not (last_attempt or isinstance(error, ProviderRejected)):
                raise  # transient: the runtime retries on the queue's tiers
            # Raising now would park the message in the DLQ and leave the application
            # "verified" for ever, its applicant never told. The provider is down for longer
            # than every retry (or refuses this checkout outright), so the honest outcome is a
            # failed payment: the application reaches payment_failed and the applicant hears.
            reason = _reason(error, ctx.attempt)
            payment, failed = domain.fail_to_start(verified, self.fee, reason)
            if await repository.insert(conn, payment):
                ctx.emit(failed)
            log.error(
                "payment could not be started",
                application_id=verified.application_id,
                attempt=ctx.attempt,
                error=str(error),
            )
            return
        payment, initiated = domain.start(verified, checkout, self.fee)
        if await repository.insert(conn, payment):
            ctx.emit(initiated)
        log.info(
            "payment initiated",
            application_id=verified.application_id,
            payment_id=checkout.payment_id,
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
        self, ctx: MessageContext[PostgresTransaction], webhook: PaymentWebhookReceived
    ) -> None:
        conn = ctx.tx.connection
        payment = await repository.lock(conn, webhook.application_id)
        if payment is None:
            raise PaymentNotRecordedYet(
                f"no payment recorded for application {webhook.application_id} yet"
            )
        settlement = domain.settle(payment, webhook)
        if settlement.payment is not None:
            await repository.update_status(conn, settlement.payment)
        if settlement.event is not None:
            ctx.emit(settlement.event)
        log.info(
            settlement.event.event_type if settlement.event else "webhook ignored",
            application_id=webhook.application_id,
            payment_id=webhook.payment_id,
            provider_event_id=webhook.provider_event_id,
            note=settlement.note,
        )


def _reason(error: ProviderError, attempt: int) -> str:
    if isinstance(error, ProviderRejected):
        return str(error)
    return f"{error} (gave up after {attempt} attempts)"


def make_handler(
    provider: PaymentProvider, fee: Fee, simulated_ms: int = 0
) -> Handler[PostgresTransaction]:
    return PaymentHandler(provider, fee, simulated_ms)

"""application.submitted -> check every document -> documents.verified / documents.rejected.

The handler works through a unit of work (``VerifierWork``): the message's transaction and the
``Verifications`` repository in it; the runtime writes the event it emits."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

from services.verifier.checker import DocumentChecker
from services.verifier.domain import outcome
from services.verifier.repository import PostgresVerifications, Verifications
from shared.consumer.routing import routed
from shared.consumer.runtime import Handler, MessageContext
from shared.consumer.transaction import Transaction
from shared.db.transactions import PostgresTransaction
from shared.events.catalog import ApplicationSubmitted

log = structlog.get_logger("verifier.handler")


class VerifierWork(Transaction, Protocol):
    @property
    def verifications(self) -> Verifications: ...


class VerifierTransaction(PostgresTransaction):
    @property
    def verifications(self) -> PostgresVerifications:
        return PostgresVerifications(self.connection)


def make_handler(checker: DocumentChecker, simulated_ms: int = 0) -> Handler[VerifierWork]:
    async def verify(ctx: MessageContext[VerifierWork], submitted: ApplicationSubmitted) -> None:
        verifications = ctx.tx.verifications
        if await verifications.already_decided(submitted.application_id):
            # Another message about the same application (a resubmitted event): decided once.
            log.info("already verified", application_id=submitted.application_id)
            return
        started = time.perf_counter()
        if simulated_ms:
            await asyncio.sleep(simulated_ms / 1000)
        verdicts = await asyncio.gather(
            *(checker.verify(document) for document in submitted.documents)
        )
        event = outcome(submitted, verdicts)
        duration_ms = round((time.perf_counter() - started) * 1000)
        if await verifications.record_outcome(event, str(ctx.envelope.message_id), duration_ms):
            ctx.emit(event)
        log.info(
            event.event_type,
            application_id=submitted.application_id,
            documents=len(verdicts),
            rejected=[v.reason for v in verdicts if not v.ok],
            duration_ms=duration_ms,
        )

    return routed({ApplicationSubmitted: verify})

"""application.submitted -> check every document -> documents.verified / documents.rejected."""

from __future__ import annotations

import asyncio
import time

import structlog

from services.verifier import repository
from services.verifier.checker import DocumentChecker
from services.verifier.domain import outcome
from shared.consumer.routing import routed
from shared.consumer.runtime import Handler, MessageContext
from shared.db.transactions import PostgresTransaction
from shared.events.catalog import ApplicationSubmitted

log = structlog.get_logger("verifier.handler")


def make_handler(checker: DocumentChecker, simulated_ms: int = 0) -> Handler[PostgresTransaction]:
    async def verify(
        ctx: MessageContext[PostgresTransaction], submitted: ApplicationSubmitted
    ) -> None:
        conn = ctx.tx.connection
        if await repository.already_decided(conn, submitted.application_id):
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
        if await repository.record_outcome(conn, event, str(ctx.envelope.message_id), duration_ms):
            ctx.emit(event)
        log.info(
            event.event_type,
            application_id=submitted.application_id,
            documents=len(verdicts),
            rejected=[v.reason for v in verdicts if not v.ok],
            duration_ms=duration_ms,
        )

    return routed({ApplicationSubmitted: verify})

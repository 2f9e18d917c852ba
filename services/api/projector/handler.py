"""The projector's message handler: load the row (locked), apply the state machine, save.

The row lock (SELECT ... FOR UPDATE) serialises events of one application across replicas,
so the "emit application.completed once" guard is read and written in the same transaction
as the outbox row it guards.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection

from services.api.projector.state import ApplicationState, Observation, Transition, apply
from services.api.statuses import Status
from shared.consumer.runtime import MessageContext
from shared.db.transactions import PostgresTransaction
from shared.errors import DomainRuleViolation
from shared.events.catalog import (
    ApplicationCompleted,
    ApplicationSubmitted,
    DocumentsRejected,
    DocumentsVerified,
    EmailSent,
    EventPayload,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
)

QUEUE = "api.projector"


def observe(payload: EventPayload) -> tuple[str, Observation] | None:
    """The application an event is about, and what it says; None if it is about none."""
    match payload:
        case ApplicationSubmitted() | DocumentsVerified():
            return payload.application_id, Observation(payload.event_type)
        case DocumentsRejected():
            reasons = "; ".join(
                f"{d.filename}: {d.reason or 'rejected'}" for d in payload.documents if not d.ok
            )
            detail = f"documents rejected: {reasons}" if reasons else "documents rejected"
            return payload.application_id, Observation(payload.event_type, detail=detail)
        case PaymentInitiated():
            return payload.application_id, Observation(
                payload.event_type, payment_id=payload.payment_id, checkout_url=payload.checkout_url
            )
        case PaymentCompleted():
            return payload.application_id, Observation(
                payload.event_type, payment_id=payload.payment_id
            )
        case PaymentFailed():
            return payload.application_id, Observation(
                payload.event_type, detail=f"payment failed: {payload.reason}"
            )
        case EmailSent():
            if payload.application_id is None:
                return None
            return payload.application_id, Observation(payload.event_type, detail=payload.template)
    raise DomainRuleViolation(f"the projector has no rule for {payload.event_type}")


async def handle(ctx: MessageContext[PostgresTransaction]) -> None:
    observed = observe(ctx.payload)
    if observed is None:
        return
    raw_id, observation = observed
    try:
        application_id = uuid.UUID(raw_id)
    except ValueError:
        raise DomainRuleViolation(f"application id {raw_id!r} is not a UUID") from None
    conn = ctx.tx.connection
    loaded = await load_for_update(conn, application_id)
    if loaded is None:
        # The API commits the row before the event exists: this event cannot be ours.
        raise DomainRuleViolation(f"no application {application_id}")
    state, applicant_email = loaded
    transition = apply(state, observation)
    await save(conn, application_id, state, transition, ctx.envelope.type, ctx.envelope.message_id)
    if transition.emit_completed:
        ctx.emit(
            ApplicationCompleted(
                application_id=str(application_id), applicant_email=applicant_email
            )
        )


async def load_for_update(
    conn: AsyncConnection[Any], application_id: uuid.UUID
) -> tuple[ApplicationState, str] | None:
    cursor = await conn.execute(
        "SELECT a.status, a.progress, a.docs_verified, a.payment_completed, a.checkout_url,"
        " a.payment_id, a.completed_event_emitted, u.email"
        " FROM applications a JOIN users u ON u.id = a.applicant_id"
        " WHERE a.id = %s FOR UPDATE OF a",
        (application_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    status, progress, docs, paid, checkout_url, payment_id, emitted, email = row
    state = ApplicationState(
        Status(status), progress, docs, paid, checkout_url, payment_id, emitted
    )
    return state, email


async def save(
    conn: AsyncConnection[Any],
    application_id: uuid.UUID,
    before: ApplicationState,
    transition: Transition,
    event_type: str,
    message_id: uuid.UUID,
) -> None:
    after = transition.state
    if after != before:
        await conn.execute(
            "UPDATE applications SET status = %s, progress = %s, docs_verified = %s,"
            " payment_completed = %s, checkout_url = %s, payment_id = %s,"
            " completed_event_emitted = %s, updated_at = now() WHERE id = %s",
            (
                after.status.value,
                after.progress,
                after.docs_verified,
                after.payment_completed,
                after.checkout_url,
                after.payment_id,
                after.completed_event_emitted,
                application_id,
            ),
        )
    if transition.history:
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO application_history"
                " (application_id, status, progress, event_type, message_id, note)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (application_id, e.status.value, e.progress, event_type, message_id, e.note)
                    for e in transition.history
                ],
            )

"""The projector's message handler: load the application (locked), apply the state machine,
save. It works through a unit of work (``ProjectionWork``): the runtime's transaction plus the
``Applications`` repository, so a fake one drives it in unit tests without Postgres."""

from __future__ import annotations

import uuid
from typing import Protocol

from services.api.projector.repository import Applications
from services.api.projector.state import EventFacts, apply
from shared.consumer.routing import Route, routed
from shared.consumer.runtime import MessageContext
from shared.consumer.transaction import Transaction
from shared.errors import DomainRuleViolation
from shared.events.catalog import (
    DocumentsRejected,
    DocumentsVerified,
    EventPayload,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
)

QUEUE = "api.projector"


class ProjectionWork(Transaction, Protocol):
    @property
    def applications(self) -> Applications: ...


def rejected(payload: DocumentsRejected) -> EventFacts:
    reasons = "; ".join(
        f"{d.filename}: {d.reason or 'rejected'}" for d in payload.documents if not d.ok
    )
    return EventFacts(
        payload.event_type,
        detail=f"documents rejected: {reasons}" if reasons else "documents rejected",
    )


def facts_of(payload: EventPayload) -> EventFacts:
    """What an event says about its application."""
    match payload:
        case DocumentsVerified():
            return EventFacts(payload.event_type)
        case DocumentsRejected():
            return rejected(payload)
        case PaymentInitiated():
            return EventFacts(
                payload.event_type, payment_id=payload.payment_id, checkout_url=payload.checkout_url
            )
        case PaymentCompleted():
            return EventFacts(payload.event_type, payment_id=payload.payment_id)
        case PaymentFailed():
            return EventFacts(payload.event_type, detail=f"payment failed: {payload.reason}")
    raise DomainRuleViolation(f"the projector has no rule for {payload.event_type}")


Projected = (
    DocumentsVerified | DocumentsRejected | PaymentInitiated | PaymentCompleted | PaymentFailed
)


async def project(ctx: MessageContext[ProjectionWork], payload: Projected) -> None:
    try:
        application_id = uuid.UUID(payload.application_id)
    except ValueError:
        raise DomainRuleViolation(
            f"application id {payload.application_id!r} is not a UUID"
        ) from None
    applications = ctx.tx.applications
    state = await applications.load_for_update(application_id)
    if state is None:
        # The API commits the row before the event exists: this event cannot be ours.
        raise DomainRuleViolation(f"no application {application_id}")
    transition = apply(state, facts_of(payload))
    await applications.save(
        application_id, state, transition, ctx.envelope.type, ctx.envelope.message_id
    )


ROUTES: dict[type[EventPayload], Route[ProjectionWork]] = dict.fromkeys(
    (DocumentsVerified, DocumentsRejected, PaymentInitiated, PaymentCompleted, PaymentFailed),
    project,
)
handle = routed(ROUTES)

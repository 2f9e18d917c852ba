"""Handlers routed by payload type: a queue's handler is a table ``{EventType: handler}``,
and so is its ``on_exhausted`` hook (``{EventType: what to record when the attempts run out}``).

Each handler is written for the one payload type it handles (it gets it typed, next to its
context), so no handler walks a chain of ``isinstance`` checks, and a payload the table does
not name is a permanent error (the message goes to the DLQ saying so), decided here once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from shared.consumer.runtime import Exhausted, ExhaustedHook, Handler, MessageContext
from shared.consumer.transaction import TxT
from shared.errors import DomainRuleViolation
from shared.events.catalog import EventPayload

# (context, the context's payload as its own type) -> None. ``Any``: one table holds handlers
# of different payload types; ``routed`` only ever passes a handler the type it is listed for.
Route: TypeAlias = Callable[[MessageContext[TxT], Any], Awaitable[None]]
# (context, payload, why the attempts ran out) -> None
ExhaustedRoute: TypeAlias = Callable[[MessageContext[TxT], Any, Exhausted], Awaitable[None]]


def routed(routes: Mapping[type[EventPayload], Route[TxT]]) -> Handler[TxT]:
    table = dict(routes)

    async def handle(context: MessageContext[TxT]) -> None:
        route = table.get(type(context.payload))
        if route is None:
            raise DomainRuleViolation(
                f"{context.queue.name} has no handler for {context.envelope.type}"
            )
        await route(context, context.payload)

    return handle


def routed_on_exhausted(
    routes: Mapping[type[EventPayload], ExhaustedRoute[TxT]],
) -> ExhaustedHook[TxT]:
    """The queue's ``on_exhausted`` hook; a payload type without one is dead-lettered."""
    table = dict(routes)

    async def on_exhausted(context: MessageContext[TxT], exhausted: Exhausted) -> None:
        route = table.get(type(context.payload))
        if route is None:
            raise exhausted.error
        await route(context, context.payload, exhausted)

    return on_exhausted


def routed_event_types(routes: Mapping[type[EventPayload], object]) -> frozenset[str]:
    """The event types a routing table handles (to check it against the queue's bindings)."""
    return frozenset(model.event_type for model in routes)

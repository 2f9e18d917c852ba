"""Handlers routed by payload type (shared.consumer.routing)."""

from __future__ import annotations

from typing import Any

import pytest

from services.payments.domain import Fee
from services.payments.handler import PaymentHandler
from shared.consumer.memory import InMemoryTransactions, MemoryTransaction
from shared.consumer.routing import routed, routed_event_types
from shared.consumer.runtime import MessageContext
from shared.errors import DomainRuleViolation, PermanentError
from shared.events.catalog import EventPayload, OtpRequested, ReportRequested
from shared.events.envelope import new_envelope
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import QueueSpec
from tests.support.events import otp_requested

SPEC = QueueSpec("work", "tests", ("auth.otp_requested", "report.requested"))


def context(payload: EventPayload) -> MessageContext[MemoryTransaction]:
    transaction = MemoryTransaction(InMemoryTransactions())
    return MessageContext(new_envelope(payload), payload, 1, SPEC, transaction)


async def test_each_payload_reaches_the_handler_listed_for_its_type() -> None:
    seen: list[tuple[str, EventPayload]] = []

    async def on_code(ctx: MessageContext[Any], payload: OtpRequested) -> None:
        seen.append(("code", payload))

    async def on_report(ctx: MessageContext[Any], payload: ReportRequested) -> None:
        seen.append(("report", payload))

    handle = routed({OtpRequested: on_code, ReportRequested: on_report})
    code = otp_requested("a@example.org", "123456")
    report = ReportRequested(report_id="all well", kind="applications", recipient="ops@example.org")
    await handle(context(report))
    await handle(context(code))
    assert seen == [("report", report), ("code", code)]


async def test_a_payload_without_a_route_is_a_permanent_domain_error() -> None:
    handle = routed({ReportRequested: lambda ctx, payload: None})  # type: ignore[arg-type, return-value]
    with pytest.raises(DomainRuleViolation, match=r"work has no handler for auth\.otp_requested"):
        await handle(context(otp_requested("a@example.org", "123456")))
    assert issubclass(DomainRuleViolation, PermanentError)  # the runtime dead-letters it at once


def test_payments_routes_exactly_the_events_its_queue_is_bound_to() -> None:
    handler = PaymentHandler(provider=object(), fee=Fee(5000, "EUR"))  # type: ignore[arg-type]
    assert routed_event_types(handler.routes) == set(
        SYSTEM_TOPOLOGY.queue("payments.applications").bindings
    )

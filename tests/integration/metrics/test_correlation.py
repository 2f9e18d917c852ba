"""One correlation id from the HTTP request through every hop: the API's outbox row, the
relay's message, the consumer's log lines and the event it emits downstream."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import structlog
from psycopg_pool import AsyncConnectionPool

from shared.broker.memory import InMemoryBroker
from shared.consumer.memory import InMemoryTransactions
from shared.consumer.runtime import Consumer, MessageContext
from shared.events.catalog import OtpRequested, ReportRequested
from shared.events.signing import EventSigner
from shared.outbox.relay import Relay
from shared.topology import Exchanges, QueueSpec, Topology
from tests.integration.api.conftest import Applicant
from tests.support.events import DEVELOPMENT_VERIFIER
from tests.support.waiting import eventually


async def test_an_event_emitted_downstream_carries_the_requests_correlation_id(
    client: httpx.AsyncClient, alice: Applicant, db: AsyncConnectionPool, api_schema: str
) -> None:
    # Given the API's outbox relayed to an in-memory broker, and a consumer of one-time codes
    # that emits an event of its own
    exchanges = Exchanges.namespaced(api_schema)
    spec = QueueSpec(f"{api_schema}.codes", "tests", ("auth.otp_requested",))
    broker = InMemoryBroker()
    await broker.declare(Topology(exchanges, (spec,)))
    relay = Relay(
        pool=db,
        broker=broker,
        exchange=exchanges.events,
        schemas=[api_schema],
        signers={api_schema: EventSigner.development("api")},
        listen_conninfo="unused: the test calls publish_batch",
    )
    bound_in_handler: list[dict[str, Any]] = []

    async def send_code(ctx: MessageContext[Any]) -> None:
        bound_in_handler.append(structlog.contextvars.get_contextvars())
        assert isinstance(ctx.payload, OtpRequested)
        ctx.emit(
            ReportRequested(
                report_id="a code was sent", kind="applications", recipient=ctx.payload.email
            )
        )

    transactions = InMemoryTransactions()
    consumer: Consumer[Any] = Consumer(
        service="tests",
        spec=spec,
        exchanges=exchanges,
        broker=broker,
        transactions=transactions,
        handler=send_code,
        authenticity=DEVELOPMENT_VERIFIER,
    )
    await consumer.start()
    correlation_id = f"corr-{uuid.uuid4()}"

    # When Alice asks for a one-time code with her own correlation id
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        response = await client.post(
            "/auth/otp", headers={**alice.headers, "X-Correlation-ID": correlation_id}
        )
        assert response.status_code == 202, response.text
        assert await relay.publish_batch(api_schema) == 1
        await eventually(lambda: len(transactions.outbox) == 1, what="the downstream event")
    await consumer.stop()
    await broker.close()

    # Then the answer echoes the id, and the event the consumer emitted carries it, caused by
    # the API's event
    assert response.headers["x-correlation-id"] == correlation_id
    emitted = transactions.outbox[0]
    assert emitted.type == "report.requested"
    assert emitted.correlation_id == correlation_id
    async with db.connection() as conn:
        row = await (await conn.execute("SELECT message_id::text FROM outbox")).fetchone()
    assert row is not None and emitted.causation_id == row[0]
    # And the consumer's handler and log lines were bound to it
    assert bound_in_handler[0]["correlation_id"] == correlation_id
    consumed = [line for line in logs if line.get("queue") == spec.name]
    assert consumed and all(line["correlation_id"] == correlation_id for line in consumed)

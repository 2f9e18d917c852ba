"""The consumer runtime: the one place where a message is acknowledged, retried or
dead-lettered.

    decode -> verify the signature -> validate
           -> one transaction {claim message id; handler; outbox rows} -> commit -> ack

- duplicate (id already claimed): ack and skip;
- permanent error (undecodable, unknown type, not signed by the type's owner, invalid
  payload, domain rule): copy to
  ``<queue>.dlq`` with headers naming service, exception, message, attempt; ack;
- transient error: copy to ``<queue>.retry.<delay>`` with ``x-attempt`` + 1; ack; when the
  attempts are used up, dead-letter instead;
- the database unreachable: the message is held (not acked, not requeued) and handled again
  after a pause, doubling up to ``MAX_INFRASTRUCTURE_BACKOFF``, until the database answers; it
  uses up no attempt and is never bounced back to the queue, where a quorum queue would count
  each requeue against ``x-delivery-limit`` and dead-letter a message that was never at fault.
  Held messages fill the prefetch, so no more arrive meanwhile. Only a consumer that stops
  while the database is away gives its held messages back (one redelivery each);
- a copy that the broker did not confirm: the original is requeued, never acked, so nothing
  is lost (at worst it is processed again, and the claim makes that a no-op).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic

import psycopg
import psycopg_pool
import structlog

from shared.broker.base import Broker, Delivery, OutgoingMessage, Subscription
from shared.consumer import policy
from shared.consumer.transaction import TransactionFactory, TxT
from shared.errors import PublishFailed, UndecodableMessage
from shared.events.catalog import EventPayload, parse_payload
from shared.events.envelope import CONTENT_TYPE, Envelope, decode_envelope, new_envelope
from shared.events.signing import EventVerifier
from shared.topology import Exchanges, QueueSpec, dead_letter_queue_name, retry_queue_name

log = structlog.get_logger("consumer")

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
MAX_INFRASTRUCTURE_BACKOFF = 10.0

# Errors that say "the database is unreachable", not "this message is bad".
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
)


@dataclass
class MessageContext(Generic[TxT]):
    """What a handler gets: the validated event, and the open transaction to work in."""

    envelope: Envelope
    payload: EventPayload
    attempt: int
    queue: QueueSpec
    tx: TxT
    outgoing: list[Envelope] = field(default_factory=list)

    def emit(self, payload: EventPayload) -> Envelope:
        """Publish ``payload`` once this transaction commits (through the outbox)."""
        envelope = new_envelope(
            payload,
            correlation_id=self.envelope.correlation_id,
            causation_id=str(self.envelope.message_id),
        )
        self.outgoing.append(envelope)
        return envelope


Handler = Callable[[MessageContext[TxT]], Awaitable[None]]


@dataclass(frozen=True)
class Observation:
    """What happened to one delivery: for metrics and the per-message timeline."""

    service: str
    queue: QueueSpec
    message_id: str | None
    correlation_id: str | None
    event_type: str | None
    attempt: int
    outcome: str  # processed | duplicate | retried | dead-lettered | requeued
    seconds: float
    occurred_at: datetime | None = None  # when the event was created, for lane wait
    error_type: str | None = None
    error: str | None = None


Observer = Callable[[Observation], Awaitable[None]]


def decode(
    message: OutgoingMessage, max_bytes: int, authenticity: EventVerifier
) -> tuple[Envelope, EventPayload]:
    """Bytes on the wire to a validated event signed by its type's owner, or a
    ``PermanentError`` saying why not."""
    if len(message.body) > max_bytes:
        raise UndecodableMessage(f"body of {len(message.body)} bytes exceeds {max_bytes}")
    if message.content_type != CONTENT_TYPE:
        raise UndecodableMessage(
            f"content type {message.content_type!r}, expected {CONTENT_TYPE!r}"
        )
    if not message.message_id:
        raise UndecodableMessage("the message has no message_id property")
    envelope = decode_envelope(message.body)
    if str(envelope.message_id) != message.message_id:
        raise UndecodableMessage(
            f"message_id property {message.message_id!r} differs from the envelope's"
        )
    authenticity.verify(envelope.type, message.body, message.headers)
    return envelope, parse_payload(envelope.type, envelope.version, envelope.payload)


class Consumer(Generic[TxT]):
    def __init__(
        self,
        *,
        service: str,
        spec: QueueSpec,
        exchanges: Exchanges,
        broker: Broker,
        transactions: TransactionFactory[TxT],
        handler: Handler[TxT],
        authenticity: EventVerifier,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        infrastructure_backoff: float = 1.0,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.service = service
        self.spec = spec
        self.exchanges = exchanges
        self.broker = broker
        self.transactions = transactions
        self.handler = handler
        self.authenticity = authenticity
        self.max_message_bytes = max_message_bytes
        self.infrastructure_backoff = infrastructure_backoff
        self.observers = list(observers)
        self._subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        # processed / duplicate / retried / dead-lettered / requeued: for metrics and tests
        self.outcomes: Counter[str] = Counter()

    async def start(self) -> None:
        self._subscription = await self.broker.consume(
            self.spec.name, self.spec.prefetch, self._on_delivery
        )
        log.info("consuming", queue=self.spec.name, prefetch=self.spec.prefetch)

    @property
    def consuming(self) -> bool:
        return self._subscription is not None

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, then let the ones in hand finish (graceful shutdown, and
        pausing: the queue keeps what arrives meanwhile; ``start`` resumes)."""
        self._stopping = True  # messages held for the database go back now
        try:
            if self._subscription is not None:
                await self._subscription.cancel()
                self._subscription = None
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), timeout=timeout)
        finally:
            self._stopping = False
        log.info("stopped", queue=self.spec.name)

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self.process(delivery)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def process(self, delivery: Delivery) -> None:
        message = delivery.message
        attempt = policy.attempt_of(message.headers)
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            queue=self.spec.name,
            attempt=attempt,
        ):
            started = time.perf_counter()
            envelope: Envelope | None = None
            failure: Exception | None = None
            try:
                envelope, outcome, failure = await self._process(delivery, attempt)
            except PublishFailed as error:
                log.warning("copy not confirmed, requeueing the original", error=str(error))
                outcome, failure = "requeued", error
                await _settle(delivery.requeue())
            self.outcomes[outcome] += 1
            await self._observe(
                message, envelope, attempt, outcome, time.perf_counter() - started, failure
            )

    async def _process(
        self, delivery: Delivery, attempt: int
    ) -> tuple[Envelope | None, str, Exception | None]:
        """Handle one delivery and settle it; return the envelope, outcome and error."""
        message = delivery.message
        started = time.perf_counter()
        envelope: Envelope | None = None
        try:
            envelope, payload = decode(message, self.max_message_bytes, self.authenticity)
            outcome = await self._handle_when_the_database_answers(envelope, payload, attempt)
        except INFRASTRUCTURE_ERRORS as error:
            log.warning("stopping while the database is unavailable, message goes back")
            await _settle(delivery.requeue())
            return envelope, "requeued", error
        except Exception as error:
            decision = policy.decide(self.spec, attempt, error)
            if isinstance(decision, policy.Retry):
                await self._retry(message, decision, error)
                outcome = "retried"
            else:
                await self._dead_letter(message, attempt, error, decision.kind)
                outcome = "dead-lettered"
            await _settle(delivery.ack())
            return envelope, outcome, error
        log.info(outcome, seconds=round(time.perf_counter() - started, 4))
        await _settle(delivery.ack())
        return envelope, outcome, None

    async def _observe(
        self,
        message: OutgoingMessage,
        envelope: Envelope | None,
        attempt: int,
        outcome: str,
        seconds: float,
        error: Exception | None,
    ) -> None:
        if not self.observers:
            return
        observation = Observation(
            service=self.service,
            queue=self.spec,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            event_type=envelope.type if envelope else message.type,
            attempt=attempt,
            outcome=outcome,
            seconds=seconds,
            occurred_at=envelope.occurred_at if envelope else None,
            error_type=error.__class__.__name__ if error else None,
            error=policy.describe(error) if error else None,
        )
        for observer in self.observers:
            try:
                await observer(observation)
            except Exception as failure:  # observing must never break processing
                log.warning("observer failed", error=repr(failure))

    async def _handle_when_the_database_answers(
        self, envelope: Envelope, payload: EventPayload, attempt: int
    ) -> str:
        delay = self.infrastructure_backoff
        while True:
            try:
                return await self._handle(envelope, payload, attempt)
            except INFRASTRUCTURE_ERRORS as error:
                if self._stopping:
                    raise
                log.warning("database unavailable, message held", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_INFRASTRUCTURE_BACKOFF)

    async def _handle(self, envelope: Envelope, payload: EventPayload, attempt: int) -> str:
        async with self.transactions.begin() as tx:
            if not await tx.claim(self.spec.name, str(envelope.message_id)):
                return "duplicate"
            context = MessageContext(envelope, payload, attempt, self.spec, tx)
            await self.handler(context)
            await tx.add_outbox(context.outgoing)
        return "processed"

    async def _retry(self, message: OutgoingMessage, retry: policy.Retry, error: Exception) -> None:
        now = datetime.now(UTC)
        copy = message.with_headers(policy.retry_headers(message.headers, retry, error, now))
        target = retry_queue_name(self.spec.name, retry.delay)
        await self.broker.publish(self.exchanges.retry, target, copy)
        log.warning(
            "retry scheduled",
            delay=retry.delay,
            next_attempt=retry.next_attempt,
            error_type=error.__class__.__name__,
            error=policy.describe(error),
        )

    async def _dead_letter(
        self, message: OutgoingMessage, attempt: int, error: Exception, kind: str
    ) -> None:
        headers = policy.dead_letter_headers(
            message.headers,
            service=self.service,
            queue=self.spec.name,
            attempt=attempt,
            error=error,
            kind=kind,
            now=datetime.now(UTC),
        )
        await self.broker.publish(
            self.exchanges.dead, self.spec.name, message.with_headers(headers)
        )
        log.error(
            "dead-lettered",
            dlq=dead_letter_queue_name(self.spec.name),
            kind=kind,
            error_type=error.__class__.__name__,
            error=policy.describe(error),
        )


async def _settle(acknowledgement: Awaitable[None]) -> None:
    """Ack or requeue; if the channel is gone the broker redelivers, and the claim dedups."""
    try:
        await acknowledgement
    except Exception as error:
        log.warning("could not settle the delivery; it will be redelivered", error=repr(error))

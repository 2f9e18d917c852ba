"""The consumer runtime: the one place where a message is acknowledged, retried or
dead-lettered. (Commands to the process, which are no events, are acknowledged beside it, in
``commands.py``.)

    decode -> verify the signature -> validate
           -> one transaction {claim message id; handler; outbox rows} -> commit -> ack

Batches: a queue whose ``batch_size`` is above 1 takes the deliveries in hand through ONE
transaction (up to ``batch_size``: after a quiet spell what arrives within ``batch_window``,
under load what arrived while the previous batch ran):

    decode + verify + validate each (once) -> {one multi-row claim; each handler in turn;
    one multi-row outbox insert + NOTIFY} -> one commit -> the acks

A handler that fails in a batch must not fail its neighbours: the transaction rolls back and
the batch's messages are handled again one by one, each in its own transaction, so the failing
one alone is retried or dead-lettered with its reason, exactly as below. Messages that do not
decode never enter a batch's transaction: they are dead-lettered at once. Two deliveries of one
message id in a batch: the first is processed, the second is a duplicate. The database
unreachable: the whole batch is held and tried again, as a single message is (below).

Each message, alone or in a batch, ends in one of these:

- duplicate (id already claimed): ack and skip;
- permanent error (undecodable, unknown type, not signed by the type's owner (``ForgedEvent``),
  invalid payload, domain rule): copy to ``<queue>.dlq`` with headers naming service,
  exception, message, attempt; ack;
- transient error: copy to ``<queue>.retry.<delay>`` with ``x-attempt`` + 1; ack; when the
  attempts are used up, dead-letter instead, unless the queue has an ``on_exhausted`` hook:
  then the hook records the honest outcome (a failed payment rather than an application left
  waiting for ever) in a transaction of its own, like a handler's, and the message is acked;
  if the hook fails too, the message is dead-lettered;
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
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

import psycopg
import psycopg_pool
import structlog

from shared.broker.base import Broker, BrokerMessage, Delivery, Subscription
from shared.consumer import policy
from shared.consumer.decoding import DEFAULT_MAX_MESSAGE_BYTES, Received, decode
from shared.consumer.transaction import TransactionFactory, TxT, TxT_co
from shared.errors import PublishFailed
from shared.events.catalog import EventPayload
from shared.events.envelope import Envelope, new_envelope
from shared.events.signing import EventVerifier
from shared.outcomes import Outcome
from shared.topology import Exchanges, QueueSpec, dead_letter_queue_name, retry_queue_name

log = structlog.get_logger("consumer")

_T = TypeVar("_T")

# How long the first delivery of a batch waits for companions: deliveries of a burst arrive
# within microseconds of each other; a quiet queue pays at most this in latency.
DEFAULT_BATCH_WINDOW = 0.002
MAX_INFRASTRUCTURE_BACKOFF = 10.0

# Errors that say "the database is unreachable", not "this message is bad".
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
)


@dataclass(frozen=True)
class MessageContext(Generic[TxT_co]):
    """What a handler gets: the validated event, and the open transaction (the unit of work,
    with the service's repositories) to work in. Read-only, so a handler written for a
    narrower unit of work (a protocol) accepts the runtime's concrete one."""

    envelope: Envelope
    payload: EventPayload
    attempt: int
    queue: QueueSpec
    tx: TxT_co
    outgoing: list[Envelope] = field(default_factory=list)

    @property
    def last_attempt(self) -> bool:
        """Whether a transient failure now would be dead-lettered instead of retried: the
        handler's last chance to record an honest outcome itself (the queue's retry policy
        says so, the handler does not count attempts)."""
        return policy.is_last_attempt(self.queue, self.attempt)

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
class Exhausted:
    """Why a message's attempts ran out: its last error, after how many attempts."""

    error: Exception
    attempts: int

    def __str__(self) -> str:
        return f"{policy.describe(self.error)} (gave up after {self.attempts} attempts)"


# What a queue records when a message's attempts are used up (``Consumer(on_exhausted=...)``).
ExhaustedHook = Callable[[MessageContext[TxT], Exhausted], Awaitable[None]]


@dataclass(frozen=True)
class Observation:
    """What happened to one delivery: for metrics and the per-message timeline."""

    service: str
    queue: QueueSpec
    message_id: str | None
    correlation_id: str | None
    event_type: str | None
    attempt: int
    outcome: Outcome
    seconds: float
    occurred_at: datetime | None = None  # when the event was created, for lane wait
    error_type: str | None = None
    error: str | None = None


Observer = Callable[[Observation], Awaitable[None]]


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
        batch_window: float = DEFAULT_BATCH_WINDOW,
        on_exhausted: ExhaustedHook[TxT] | None = None,
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
        self.batch_window = batch_window
        self.on_exhausted = on_exhausted
        self._subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._collecting: list[tuple[Delivery, asyncio.Future[None]]] = []
        self._batch_full = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        # processed / duplicate / retried / dead-lettered / requeued: for metrics and tests
        self.outcomes: Counter[Outcome] = Counter()
        # transactions that held more than one message, and those that fell back one by one
        self.batches: Counter[str] = Counter()

    async def start(self) -> None:
        self._subscription = await self.broker.consume(
            self.spec.name, self.spec.prefetch, self._on_delivery
        )
        log.info(
            "consuming",
            queue=self.spec.name,
            prefetch=self.spec.prefetch,
            batch_size=self.spec.batch_size,
        )

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
            if self.spec.batch_size == 1:
                await self.process(delivery)
            else:
                await self._join_batch(delivery)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    # --- collecting a batch -------------------------------------------------------------

    def _join_batch(self, delivery: Delivery) -> asyncio.Future[None]:
        """The delivery joins the next batch; resolved once that batch settled it.

        One pump per consumer runs the batches one after another (two transactions of one
        consumer, each locking several rows in arrival order, could deadlock each other):
        after a quiet spell the first batch waits ``batch_window`` for companions (or until
        it is full); while a batch runs, what arrives forms the next one, so batches grow
        with the load (group commit). The pump is a task of its own: a cancelled delivery
        callback (aio-pika cancels them when its connection drops) never cancels a
        transaction half-way."""
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._collecting.append((delivery, settled))
        if len(self._collecting) >= self.spec.batch_size:
            self._batch_full.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._pump_batches(), name=f"batches:{self.spec.name}")
        return settled

    async def _pump_batches(self) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_full.wait(), self.batch_window)
            while self._collecting:
                batch = self._collecting[: self.spec.batch_size]
                del self._collecting[: self.spec.batch_size]
                self._batch_full.clear()
                try:
                    await self.process_batch([delivery for delivery, _ in batch])
                finally:
                    for _, settled in batch:
                        if not settled.done():
                            settled.set_result(None)
        finally:
            self._pump = None

    # --- processing ---------------------------------------------------------------------

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery in a transaction of its own, and settle it."""
        await self._one(self._receive(delivery))

    async def process_batch(self, deliveries: Sequence[Delivery]) -> None:
        """Handle ``deliveries`` in one transaction if they all succeed, else one by one."""
        received = [self._receive(delivery) for delivery in deliveries]
        decoded = [item for item in received if item.error is None]
        for item in received:
            if item.error is not None:
                await self._one(item)  # dead-lettered with its reason, outside the batch
        if len(decoded) > 1 and await self._together(decoded):
            return
        for item in decoded:
            await self._one(item)

    def _receive(self, delivery: Delivery) -> Received:
        """Decode and validate once; a message that does not decode carries its error."""
        item = Received(delivery, policy.attempt_of(delivery.message.headers), time.perf_counter())
        try:
            item.envelope, item.payload = decode(
                delivery.message, self.max_message_bytes, self.authenticity
            )
        except Exception as error:
            item.error = error
        return item

    async def _together(self, batch: list[Received]) -> bool:
        """One transaction for the whole batch; False (nothing written) if a handler failed."""
        try:
            outcomes = await self._when_the_database_answers(lambda: self._batch_in_one(batch))
        except INFRASTRUCTURE_ERRORS as error:
            log.warning("stopping while the database is unavailable, batch goes back")
            for item in batch:
                await _settle(item.delivery.requeue())
                await self._finish(item, Outcome.REQUEUED, error)
            return True
        except Exception as error:
            self.batches["fell back"] += 1
            log.info(
                "batch failed, handling its messages one by one",
                queue=self.spec.name,
                size=len(batch),
                error_type=error.__class__.__name__,
            )
            return False
        self.batches["together"] += 1
        for item, outcome in zip(batch, outcomes, strict=True):
            await _settle(item.delivery.ack())
            await self._finish(item, outcome, None)
        log.info(
            "batch", queue=self.spec.name, size=len(batch), **Counter(o.value for o in outcomes)
        )
        return True

    async def _batch_in_one(self, batch: list[Received]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with self.transactions.begin() as tx:
            ids = [str(item.envelope.message_id) for item in batch if item.envelope]
            unclaimed = await tx.claim_many(self.spec.name, ids)
            outgoing: list[Envelope] = []
            for item, message_id in zip(batch, ids, strict=True):
                if message_id not in unclaimed:  # seen before, or twice in this batch
                    outcomes.append(Outcome.DUPLICATE)
                    continue
                unclaimed.discard(message_id)
                outgoing.extend(await self._run_handler(item, tx))
                outcomes.append(Outcome.PROCESSED)
            await tx.add_outbox(outgoing)
        return outcomes

    async def _when_the_database_answers(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """``work()``, tried again while the database is unreachable (the messages are held,
        see the module's docstring); raises the database's error once the consumer stops."""
        delay = self.infrastructure_backoff
        while True:
            try:
                return await work()
            except INFRASTRUCTURE_ERRORS as error:
                if self._stopping:
                    raise
                log.warning("database unavailable, message held", error=str(error), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_INFRASTRUCTURE_BACKOFF)

    async def _run_handler(
        self, item: Received, tx: TxT, handler: Handler[TxT] | None = None
    ) -> list[Envelope]:
        assert item.envelope is not None and item.payload is not None
        context = MessageContext(item.envelope, item.payload, item.attempt, self.spec, tx)
        with structlog.contextvars.bound_contextvars(
            message_id=item.message.message_id, correlation_id=item.message.correlation_id
        ):
            await (handler or self.handler)(context)
        return context.outgoing

    async def _one(self, item: Received) -> None:
        message = item.message
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            queue=self.spec.name,
            attempt=item.attempt,
        ):
            failure: Exception | None = None
            try:
                outcome, failure = await self._settle_one(item)
            except PublishFailed as error:
                log.warning("copy not confirmed, requeueing the original", error=str(error))
                outcome, failure = Outcome.REQUEUED, error
                await _settle(item.delivery.requeue())
            await self._finish(item, outcome, failure)

    async def _settle_one(self, item: Received) -> tuple[Outcome, Exception | None]:
        """Handle one delivery in its own transaction and settle it; the outcome and error."""
        try:
            if item.error is not None:
                raise item.error
            outcome = await self._when_the_database_answers(lambda: self._handle(item))
        except INFRASTRUCTURE_ERRORS as error:
            log.warning("stopping while the database is unavailable, message goes back")
            await _settle(item.delivery.requeue())
            return Outcome.REQUEUED, error
        except Exception as error:
            return await self._failed(item, error), error
        log.debug(outcome, seconds=round(time.perf_counter() - item.started, 4))
        await _settle(item.delivery.ack())
        return outcome, None

    async def _handle(self, item: Received, handler: Handler[TxT] | None = None) -> Outcome:
        assert item.envelope is not None
        async with self.transactions.begin() as tx:
            if not await tx.claim(self.spec.name, str(item.envelope.message_id)):
                return Outcome.DUPLICATE
            await tx.add_outbox(await self._run_handler(item, tx, handler))
        return Outcome.PROCESSED

    async def _failed(self, item: Received, error: Exception) -> Outcome:
        """Retried, dead-lettered, or recorded by the queue's ``on_exhausted``; then settled."""
        decision = policy.decide(self.spec, item.attempt, error)
        if isinstance(decision, policy.Retry):
            await self._retry(item.message, decision, error)
            outcome = Outcome.RETRIED
        elif decision.kind == policy.EXHAUSTED and self.on_exhausted and item.envelope:
            try:
                outcome = await self._give_up(item, Exhausted(error, item.attempt))
            except INFRASTRUCTURE_ERRORS:  # stopping while the database is away
                await _settle(item.delivery.requeue())
                return Outcome.REQUEUED
            except Exception as failure:
                if failure is not error:  # else the hook had nothing to record for it
                    log.error(
                        "on_exhausted failed too",
                        error_type=failure.__class__.__name__,
                        error=policy.describe(failure),
                    )
                await self._dead_letter(item.message, item.attempt, error, decision.kind)
                outcome = Outcome.DEAD_LETTERED
        else:
            await self._dead_letter(item.message, item.attempt, error, decision.kind)
            outcome = Outcome.DEAD_LETTERED
        await _settle(item.delivery.ack())
        return outcome

    async def _give_up(self, item: Received, exhausted: Exhausted) -> Outcome:
        """The ``on_exhausted`` hook in a transaction of its own, as a handler runs."""
        hook = self.on_exhausted
        assert hook is not None

        async def record(context: MessageContext[TxT]) -> None:
            await hook(context, exhausted)

        outcome = await self._when_the_database_answers(lambda: self._handle(item, record))
        log.warning("attempts used up; on_exhausted recorded the outcome", reason=str(exhausted))
        return outcome

    async def _finish(self, item: Received, outcome: Outcome, error: Exception | None) -> None:
        self.outcomes[outcome] += 1
        if not self.observers:
            return
        envelope = item.envelope
        observation = Observation(
            service=self.service,
            queue=self.spec,
            message_id=item.message.message_id,
            correlation_id=item.message.correlation_id,
            event_type=envelope.type if envelope else item.message.type,
            attempt=item.attempt,
            outcome=outcome,
            seconds=time.perf_counter() - item.started,
            occurred_at=envelope.occurred_at if envelope else None,
            error_type=error.__class__.__name__ if error else None,
            error=policy.describe(error) if error else None,
        )
        for observer in self.observers:
            try:
                await observer(observation)
            except Exception as failure:  # observing must never break processing
                log.warning("observer failed", error=repr(failure))

    async def _retry(self, message: BrokerMessage, retry: policy.Retry, error: Exception) -> None:
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
        self, message: BrokerMessage, attempt: int, error: Exception, kind: str
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

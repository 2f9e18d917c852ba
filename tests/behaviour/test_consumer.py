"""The consumer runtime's promises, on the in-memory double and on real RabbitMQ + Postgres."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

from shared.broker.base import BrokerMessage
from shared.consumer.policy import (
    ATTEMPT,
    ERROR_ATTEMPT,
    ERROR_KIND,
    ERROR_MESSAGE,
    ERROR_QUEUE,
    ERROR_SERVICE,
    ERROR_TYPE,
    FIRST_SEEN,
)
from shared.consumer.runtime import Consumer, Exhausted, Handler, MessageContext
from shared.errors import DomainRuleViolation
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.topology import QueueSpec, dead_letter_queue_name
from tests.behaviour.conftest import Harness
from tests.support.events import DEVELOPMENT_VERIFIER, otp_requested, sign, signed
from tests.support.waiting import eventually


class Recorder:
    """A handler that fails the first ``failures`` calls, then emits one event (the effect)."""

    def __init__(self, failures: int = 0, error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.error = error
        self.calls: list[tuple[int, float]] = []

    async def __call__(self, ctx: MessageContext[Any]) -> None:
        self.calls.append((ctx.attempt, time.monotonic()))
        if len(self.calls) <= self.failures:
            raise self.error(f"boom {len(self.calls)}")
        ctx.emit(
            PaymentFailed(
                reason="declined",
                application_id=str(ctx.envelope.message_id),
                applicant_email="a@example.org",
            )
        )


def event_message() -> BrokerMessage:
    envelope = new_envelope(
        PaymentFailed(
            reason="declined", application_id=str(uuid.uuid4()), applicant_email="a@example.org"
        )
    )
    return signed(envelope)


def new_consumer(
    harness: Harness, spec: QueueSpec, handler: Handler[Any], **options: Any
) -> Consumer[Any]:
    return Consumer(
        service="tests",
        spec=spec,
        exchanges=harness.exchanges,
        broker=harness.broker,
        transactions=harness.transactions,
        handler=handler,
        authenticity=DEVELOPMENT_VERIFIER,
        **options,
    )


async def start_consumer(
    harness: Harness, spec: QueueSpec, handler: Handler[Any], **options: Any
) -> Consumer[Any]:
    consumer = new_consumer(harness, spec, handler, **options)
    await consumer.start()
    return consumer


async def test_transient_failures_are_retried_after_the_tier_delays_and_applied_once(
    harness: Harness, namespace: str
) -> None:
    # Given a queue with 2 s and 4 s retry tiers and a handler that fails twice
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=4, retry_delays=(2.0, 4.0, 8.0))
    await harness.declare(spec)
    handler = Recorder(failures=2)
    consumer = await start_consumer(harness, spec, handler)

    # When one message arrives
    await harness.send(spec.name, event_message())
    await eventually(lambda: consumer.outcomes["processed"] == 1, timeout=30, what="processing")

    # Then it was attempted three times, about 2 s and 4 s apart, with one effect
    assert [attempt for attempt, _ in handler.calls] == [1, 2, 3]
    times = [at for _, at in handler.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for gap, delay in zip(gaps, (2.0, 4.0), strict=True):
        expected = delay * harness.time_scale
        assert expected * 0.9 <= gap <= expected + 1.5 * harness.time_scale + 0.5, gaps
    assert await harness.effects() == 1
    await consumer.stop()


async def test_exhausted_attempts_dead_letter_the_message_with_the_reason(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=3, retry_delays=(0.5,))
    await harness.declare(spec)
    handler = Recorder(failures=99)
    consumer = await start_consumer(harness, spec, handler)
    message = event_message()

    await harness.send(spec.name, message)

    [dead] = await harness.dead_letters(spec.name, 1)
    assert dead.message_id == message.message_id
    assert dead.body == message.body
    assert dead.headers[ERROR_SERVICE] == "tests"
    assert dead.headers[ERROR_QUEUE] == spec.name
    assert dead.headers[ERROR_TYPE] == "RuntimeError"
    assert dead.headers[ERROR_MESSAGE] == "boom 3"
    assert dead.headers[ERROR_ATTEMPT] == 3
    assert dead.headers[ERROR_KIND] == "attempts-exhausted"
    assert dead.headers[FIRST_SEEN]
    assert len(handler.calls) == 3
    assert await harness.effects() == 0
    await consumer.stop()


class GiveUp:
    """An ``on_exhausted`` hook: records the honest outcome (one event), or fails too."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.calls: list[Exhausted] = []

    async def __call__(self, ctx: MessageContext[Any], exhausted: Exhausted) -> None:
        self.calls.append(exhausted)
        if self.fails:
            raise RuntimeError("the hook failed too")
        ctx.emit(
            PaymentFailed(
                reason=str(exhausted),
                application_id=str(ctx.envelope.message_id),
                applicant_email="a@example.org",
            )
        )


async def test_exhausted_attempts_go_to_the_queues_hook_which_records_the_outcome(
    harness: Harness, namespace: str
) -> None:
    # Given a queue whose on_exhausted hook records an outcome, and a handler that always fails
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=3, retry_delays=(0.5,))
    await harness.declare(spec)
    hook = GiveUp()
    consumer = await start_consumer(harness, spec, Recorder(failures=99), on_exhausted=hook)
    # When a message uses up its attempts
    await harness.send(spec.name, event_message())
    await eventually(lambda: len(hook.calls) == 1, timeout=30, what="the hook")
    # Then the hook's event is the one effect, with the reason, and nothing is dead-lettered
    assert str(hook.calls[0]) == "boom 3 (gave up after 3 attempts)"
    await eventually(lambda: consumer.outcomes["processed"] == 1, timeout=10, what="the ack")
    assert await harness.effects() == 1
    assert await harness.depth(dead_letter_queue_name(spec.name)) == 0
    await consumer.stop()


async def test_a_hook_that_fails_too_leaves_the_message_dead_lettered_with_its_reason(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=2, retry_delays=(0.5,))
    await harness.declare(spec)
    consumer = await start_consumer(
        harness, spec, Recorder(failures=99), on_exhausted=GiveUp(fails=True)
    )
    await harness.send(spec.name, event_message())
    [dead] = await harness.dead_letters(spec.name, 1)
    # the handler's own error, not the hook's
    assert (dead.headers[ERROR_MESSAGE], dead.headers[ERROR_KIND]) == (
        "boom 2",
        "attempts-exhausted",
    )
    assert await harness.effects() == 0
    await consumer.stop()


async def test_a_permanent_error_is_dead_lettered_on_the_first_attempt(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=5)
    await harness.declare(spec)
    handler = Recorder(failures=99, error=DomainRuleViolation)
    consumer = await start_consumer(harness, spec, handler)

    await harness.send(spec.name, event_message())

    [dead] = await harness.dead_letters(spec.name, 1)
    assert dead.headers[ERROR_TYPE] == "DomainRuleViolation"
    assert dead.headers[ERROR_KIND] == "permanent"
    assert dead.headers[ERROR_ATTEMPT] == 1
    assert ATTEMPT not in dead.headers  # never went through a retry tier
    assert len(handler.calls) == 1
    await consumer.stop()


async def test_bad_messages_go_to_the_dlq_and_the_consumer_goes_on(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)
    handler = Recorder()
    consumer = await start_consumer(harness, spec, handler)
    unknown = new_envelope(otp_requested("a@example.org", "123456")).model_copy(
        update={"type": "no.such.event"}
    )
    invalid = event_message().body.replace(b'"application_id"', b'"application_ix"')

    await harness.send(spec.name, BrokerMessage(body=b"{not json", message_id=str(uuid.uuid4())))
    await harness.send(spec.name, BrokerMessage.from_envelope(unknown))
    await harness.send(
        spec.name, sign(BrokerMessage(body=invalid, message_id=_message_id(invalid)), "payments")
    )
    await harness.send(spec.name, BrokerMessage(body=b"{}", message_id=None))
    await harness.send(spec.name, event_message())

    dead = await harness.dead_letters(spec.name, 4)
    reasons = sorted(str(d.headers[ERROR_TYPE]) for d in dead)
    assert reasons == [
        "InvalidPayload",
        "UndecodableMessage",
        "UndecodableMessage",
        "UnknownEventType",
    ]
    assert all(d.headers[ERROR_KIND] == "permanent" for d in dead)
    await eventually(lambda: consumer.outcomes["processed"] == 1, what="the good message")
    assert await harness.effects() == 1
    await consumer.stop()


async def test_the_same_message_twice_has_one_effect(harness: Harness, namespace: str) -> None:
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)
    handler = Recorder()
    consumer = await start_consumer(harness, spec, handler)
    message = event_message()

    await harness.send(spec.name, message)
    await harness.send(spec.name, message)

    await eventually(
        lambda: consumer.outcomes["processed"] + consumer.outcomes["duplicate"] == 2,
        what="both deliveries",
    )
    assert consumer.outcomes["duplicate"] == 1
    assert await harness.effects() == 1
    await consumer.stop()


async def test_a_crash_between_commit_and_ack_has_one_effect(
    harness: Harness, namespace: str
) -> None:
    # Given a consumer whose channel dies right after its transaction commits, before the ack
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)
    crashing = CrashBeforeAck(harness.broker)
    first: Consumer[Any] = Consumer(
        service="tests",
        spec=spec,
        exchanges=harness.exchanges,
        broker=crashing,  # type: ignore[arg-type]
        transactions=harness.transactions,
        handler=Recorder(),
        authenticity=DEVELOPMENT_VERIFIER,
    )
    await first.start()
    await harness.send(spec.name, event_message())
    await eventually(lambda: crashing.crashed, what="the crash")
    assert await harness.effects() == 1

    # When the message is redelivered to a consumer that starts afterwards
    second = await start_consumer(harness, spec, Recorder())

    # Then it is recognised as a duplicate: still one effect
    await eventually(lambda: second.outcomes["duplicate"] == 1, what="the redelivery")
    assert await harness.effects() == 1
    await second.stop()


class CrashBeforeAck:
    """Wraps a broker: acknowledging closes the channel instead, like a process dying."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.crashed = False

    async def consume(self, queue: str, prefetch: int, handler: Any) -> Any:
        subscription: Any = None

        async def crash_on_ack(delivery: Any) -> None:
            async def ack() -> None:
                await subscription.close()
                self.crashed = True

            delivery.ack = ack
            await handler(delivery)

        subscription = await self.inner.consume(queue, prefetch, crash_on_ack)
        return subscription

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _message_id(body: bytes) -> str:
    import json

    return str(json.loads(body)["message_id"])

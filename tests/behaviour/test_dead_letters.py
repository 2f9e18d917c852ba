"""The dead-letter viewer and replay (``services.api.admin.dead_letters``) on the in-memory
double and on real RabbitMQ + Postgres: reading leaves every message where it was, a replay
sends the selected ones back to their work queue once, and what the broker does not take
stays in the DLQ."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.api.admin.dead_letters import DeadLetterQueues
from services.api.admin.replay import REPLAYED_BY, Selector
from shared.broker.base import BrokerMessage
from shared.consumer import policy
from shared.consumer.runtime import Consumer, MessageContext
from shared.errors import DomainRuleViolation, MissingQueue
from shared.topology import Exchanges, QueueSpec, dead_letter_queue_name
from tests.behaviour.conftest import Harness
from tests.behaviour.test_consumer import event_message, start_consumer
from tests.support.waiting import eventually

OPERATOR = "ops@example.org"


class Flaky:
    """Fails every message with ``error`` until ``fixed``; records the attempt of each call."""

    def __init__(self, error: type[Exception] = RuntimeError) -> None:
        self.error = error
        self.fixed = False
        self.attempts: list[int] = []

    async def __call__(self, ctx: MessageContext[Any]) -> None:
        self.attempts.append(ctx.attempt)
        if not self.fixed:
            raise self.error(f"blob {uuid.uuid4().hex} not found")


async def dead_lettered(
    harness: Harness, spec: QueueSpec, handler: Flaky, count: int
) -> tuple[Consumer[Any], list[str]]:
    """``count`` messages sent to ``spec`` and dead-lettered by the consumer runtime."""
    consumer = await start_consumer(harness, spec, handler)
    messages = [event_message() for _ in range(count)]
    for message in messages:
        await harness.send(spec.name, message)
    await eventually(
        lambda: consumer.outcomes["dead-lettered"] == count, timeout=30, what="dead letters"
    )
    await harness.holds(dead_letter_queue_name(spec.name), count)
    return consumer, [str(message.message_id) for message in messages]


async def test_reading_dead_letters_leaves_them_in_their_queue(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=1)
    await harness.declare(spec)
    dlq = dead_letter_queue_name(spec.name)
    # Given three messages the runtime dead-lettered
    consumer, ids = await dead_lettered(harness, spec, Flaky(DomainRuleViolation), 3)
    viewer = DeadLetterQueues(harness.broker, harness.exchanges)

    # When an operator scans the DLQ
    scan = await viewer.scan(spec.name, limit=10)

    # Then every message is listed in order, with the reason it failed, and all stay
    assert [letter.message_id for letter in scan.letters] == ids
    assert {letter.error_type for letter in scan.letters} == {"DomainRuleViolation"}
    assert len({letter.fingerprint for letter in scan.letters}) == 1  # one kind of failure
    assert scan.depth == 3 and scan.complete
    await harness.holds(dlq, 3)

    # And a scan with a smaller limit says it saw only part of the queue
    partial = await viewer.scan(spec.name, limit=2)
    assert [letter.message_id for letter in partial.letters] == ids[:2]
    assert not partial.complete
    await harness.holds(dlq, 3)

    # And one message is found by its id, a message not there is not, and all still stay
    found = await viewer.find(spec.name, ids[2], limit=10)
    assert found is not None and found.message_id == ids[2]
    assert found.headers[policy.ERROR_KIND] == "permanent"
    assert await viewer.find(spec.name, str(uuid.uuid4()), limit=10) is None
    await harness.holds(dlq, 3)
    assert [letter.message_id for letter in (await viewer.scan(spec.name, 10)).letters] == ids
    await consumer.stop()


async def test_replay_sends_the_selected_back_once_from_attempt_one(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=2, retry_delays=(0.2,))
    await harness.declare(spec)
    dlq = dead_letter_queue_name(spec.name)
    # Given two messages whose attempts ran out, and one message that is not even JSON
    handler = Flaky()
    consumer, ids = await dead_lettered(harness, spec, handler, 2)
    garbage = BrokerMessage(body=b"{not json", message_id=str(uuid.uuid4()))
    await harness.send(spec.name, garbage)
    await harness.holds(dlq, 3)
    viewer = DeadLetterQueues(harness.broker, harness.exchanges)
    [exhausted] = {
        letter.fingerprint
        for letter in (await viewer.scan(spec.name, 10)).letters
        if letter.error_type == "RuntimeError"
    }
    await harness.holds(dlq, 3)

    # When the group that ran out of attempts is replayed as a dry run
    selector = Selector(fingerprint=exhausted)
    dry = await viewer.replay(
        spec.name, selector, dry_run=True, rate_per_second=50, limit=10, replayed_by=OPERATOR
    )

    # Then it names the two, and nothing moved
    assert sorted(dry.selected) == sorted(ids) and dry.scanned == 3
    await harness.holds(dlq, 3)

    # When the cause is fixed and the group replayed for real
    handler.fixed = True
    handler.attempts.clear()
    done = await viewer.replay(
        spec.name, selector, dry_run=False, rate_per_second=50, limit=10, replayed_by=OPERATOR
    )

    # Then the two are handled once each, as a first attempt, and only the garbage stays
    assert sorted(done.selected) == sorted(ids) and done.stopped_early is None
    await eventually(lambda: consumer.outcomes["processed"] == 2, timeout=30, what="the replay")
    assert handler.attempts == [1, 1]
    await harness.holds(dlq, 1)
    [left] = (await viewer.scan(spec.name, 10)).letters
    assert left.message_id == garbage.message_id and left.error_type == "UndecodableMessage"

    # And replaying the group again finds nothing to send
    again = await viewer.replay(
        spec.name, selector, dry_run=False, rate_per_second=50, limit=10, replayed_by=OPERATOR
    )
    assert again.selected == []
    assert consumer.outcomes["processed"] == 2 and handler.attempts == [1, 1]
    await consumer.stop()


async def test_a_replayed_message_that_fails_again_is_not_replayed_twice_in_one_go(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=1)
    await harness.declare(spec)
    dlq = dead_letter_queue_name(spec.name)
    # Given three dead letters, and a cause that is not fixed
    handler = Flaky(DomainRuleViolation)
    consumer, ids = await dead_lettered(harness, spec, handler, 3)
    viewer = DeadLetterQueues(harness.broker, harness.exchanges)

    # When all are replayed, slowly enough for the first to fail again before the last goes
    outcome = await viewer.replay(
        spec.name, Selector(all=True), dry_run=False, rate_per_second=4, limit=10,
        replayed_by=OPERATOR,
    )  # fmt: skip

    # Then each was sent back exactly once, and each is back in the DLQ, marked as replayed
    assert outcome.selected == ids and outcome.scanned == 3
    await eventually(lambda: len(handler.attempts) == 6, timeout=30, what="the second failures")
    await harness.holds(dlq, 3)
    letters = (await viewer.scan(spec.name, 10)).letters
    assert sorted(letter.message_id for letter in letters) == sorted(ids)
    assert {letter.headers[REPLAYED_BY] for letter in letters} == {OPERATOR}
    await consumer.stop()


async def test_a_copy_the_broker_does_not_route_stops_the_replay_and_keeps_the_original(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work", max_attempts=1)
    await harness.declare(spec)
    dlq = dead_letter_queue_name(spec.name)
    consumer, _ = await dead_lettered(harness, spec, Flaky(DomainRuleViolation), 2)
    # Given a retry exchange that routes nowhere (its bindings were lost)
    nowhere = Exchanges.namespaced(f"{namespace}-nowhere")
    await harness.declare(exchanges=nowhere)
    viewer = DeadLetterQueues(harness.broker, nowhere)

    # When the dead letters are replayed
    outcome = await viewer.replay(
        spec.name, Selector(all=True), dry_run=False, rate_per_second=50, limit=10,
        replayed_by=OPERATOR,
    )  # fmt: skip

    # Then the replay stops at the first, says why, and nothing left the DLQ
    assert outcome.selected == []
    assert outcome.stopped_early is not None and "Unroutable" in outcome.stopped_early
    await harness.holds(dlq, 2)
    assert consumer.outcomes["processed"] == 0
    await consumer.stop()


async def test_a_dead_letter_queue_not_declared_yet_is_missing(
    harness: Harness, namespace: str
) -> None:
    viewer = DeadLetterQueues(harness.broker, harness.exchanges)
    with pytest.raises(MissingQueue):
        await viewer.scan(f"{namespace}.never-declared", limit=10)

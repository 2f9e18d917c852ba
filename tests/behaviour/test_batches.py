"""Batched consumer transactions, on the in-memory double and on real RabbitMQ + Postgres:
many deliveries in one transaction, and per-message outcomes kept when one of them is bad."""

from __future__ import annotations

import uuid
from typing import Any

from shared.broker.base import BrokerMessage
from shared.consumer.policy import ERROR_KIND, ERROR_MESSAGE, ERROR_TYPE
from shared.consumer.runtime import Consumer, MessageContext
from shared.errors import DomainRuleViolation
from shared.events.catalog import PaymentFailed
from shared.events.envelope import new_envelope
from shared.topology import QueueSpec
from tests.behaviour.conftest import Harness
from tests.behaviour.test_consumer import start_consumer
from tests.support.events import signed
from tests.support.waiting import eventually

POISON = "poison"


class Handler:
    """Emits one event per message (the effect counted); refuses the application "poison"."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, ctx: MessageContext[Any]) -> None:
        payload = ctx.payload
        assert isinstance(payload, PaymentFailed)
        self.calls.append(payload.application_id)
        if payload.application_id == POISON:
            raise DomainRuleViolation("this application breaks a rule")
        ctx.emit(
            PaymentFailed(
                reason="noted", application_id=payload.application_id, applicant_email="a@b.org"
            )
        )


def message(application_id: str) -> BrokerMessage:
    payload = PaymentFailed(
        reason="declined", application_id=application_id, applicant_email="a@b.org"
    )
    return signed(new_envelope(payload))


async def consume_all(
    harness: Harness, spec: QueueSpec, messages: list[BrokerMessage], handler: Handler
) -> Consumer[Any]:
    """Queue every message first, then start one consumer: they reach it together."""
    for item in messages:
        await harness.send(spec.name, item)
    # A generous window: the test wants them in one batch, however busy the machine
    consumer = await start_consumer(harness, spec, handler, batch_window=0.2)
    await eventually(
        lambda: sum(consumer.outcomes.values()) == len(messages),
        timeout=30,
        what="every delivery settled",
    )
    await consumer.stop()
    return consumer


async def test_a_batch_of_good_messages_and_a_duplicate_commits_once(
    harness: Harness, namespace: str
) -> None:
    # Given five messages, one of them delivered twice, on a queue that batches up to 8
    spec = harness.queue_spec(f"{namespace}.work", prefetch=8, batch_size=8)
    await harness.declare(spec)
    messages = [message(str(uuid.uuid4())) for _ in range(5)]
    handler = Handler()

    # When they reach the consumer together
    consumer = await consume_all(harness, spec, [*messages, messages[2]], handler)

    # Then one transaction held them all: five effects, the copy a duplicate
    assert consumer.batches == {"together": 1}
    assert consumer.outcomes == {"processed": 5, "duplicate": 1}
    assert len(handler.calls) == 5
    assert await harness.effects() == 5


async def test_a_failing_a_duplicate_and_an_undecodable_message_do_not_fail_their_batch(
    harness: Harness, namespace: str
) -> None:
    # Given, in one batch: two good messages, a copy of one of them, one the handler refuses
    # (a domain rule: permanent) and one that is not an event at all
    spec = harness.queue_spec(f"{namespace}.work", prefetch=8, batch_size=8)
    await harness.declare(spec)
    good_ids = [str(uuid.uuid4()) for _ in range(2)]
    good = [message(application_id) for application_id in good_ids]
    poison = message(POISON)
    garbage = BrokerMessage(body=b"{not json", message_id=str(uuid.uuid4()))
    handler = Handler()

    # When they reach the consumer together
    consumer = await consume_all(
        harness, spec, [good[0], poison, good[1], good[0], garbage], handler
    )

    # Then the batch fell back to one message per transaction: each good one has its effect
    # once, the copy is a duplicate, and the two bad ones are dead-lettered alone, with reasons
    assert consumer.batches == {"fell back": 1}
    assert consumer.outcomes == {"processed": 2, "duplicate": 1, "dead-lettered": 2}
    assert await harness.effects() == 2
    dead = {str(d.headers[ERROR_TYPE]): d for d in await harness.dead_letters(spec.name, 2)}
    assert set(dead) == {"DomainRuleViolation", "UndecodableMessage"}
    assert dead["DomainRuleViolation"].message_id == poison.message_id
    assert dead["DomainRuleViolation"].headers[ERROR_MESSAGE] == "this application breaks a rule"
    assert dead["UndecodableMessage"].body == b"{not json"
    assert all(d.headers[ERROR_KIND] == "permanent" for d in dead.values())
    # And the undecodable one never reached a handler; the poison was tried in the batch and alone
    assert handler.calls.count(POISON) == 2
    assert set(handler.calls) == {POISON, *good_ids}

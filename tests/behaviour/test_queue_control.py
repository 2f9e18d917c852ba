"""Pausing and resuming a queue's consumers through the control exchange, on the in-memory
double and on real RabbitMQ + Postgres: what a command does to the workers that hear it, and
what survives a restart."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.broker.base import BrokerMessage
from shared.consumer.runtime import Consumer
from shared.control import (
    Action,
    NoListener,
    PauseStore,
    QueueControl,
    new_command,
    send_command,
)
from shared.topology import QueueSpec
from tests.behaviour.conftest import Harness
from tests.behaviour.test_consumer import Recorder, event_message, new_consumer
from tests.support.waiting import eventually

OPERATOR = "ops@example.org"


@dataclass
class Worker:
    """One worker process: its consumers and its end of the control channel."""

    consumers: dict[str, Consumer[Any]]
    control: QueueControl
    held: list[str]

    @property
    def consumer(self) -> Consumer[Any]:
        return next(iter(self.consumers.values()))

    async def stop(self) -> None:
        await self.control.close()
        for consumer in self.consumers.values():
            await consumer.stop()


async def start_worker(
    harness: Harness, store: PauseStore, handler: Recorder, *specs: QueueSpec
) -> Worker:
    consumers = {spec.name: new_consumer(harness, spec, handler) for spec in specs}
    control = QueueControl(
        service="tests",
        store=store,
        consumers=consumers,
        broker=harness.broker,
        exchange=harness.exchanges.control,
    )
    return Worker(consumers, control, await control.start())


async def command(harness: Harness, action: Action, queue: str, at: datetime | None = None) -> None:
    sent = new_command(action, queue, OPERATOR, at or datetime.now(UTC))
    await send_command(harness.broker, harness.exchanges.control, sent)


async def test_a_paused_queue_keeps_its_messages_across_a_restart_until_resumed(
    harness: Harness, namespace: str
) -> None:
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)
    store = harness.pause_store()
    handler = Recorder()
    # Given a worker consuming its queue
    worker = await start_worker(harness, store, handler, spec)
    assert worker.held == [] and worker.consumer.consuming

    # When an operator pauses the queue
    await command(harness, "pause", spec.name)

    # Then the worker stops consuming and the pause is recorded
    await eventually(lambda: not worker.consumer.consuming, what="the pause")
    assert await store.paused() == {spec.name}

    # And a message that arrives meanwhile waits in the queue
    await harness.send(spec.name, event_message())
    await harness.holds(spec.name, 1)
    assert handler.calls == []

    # When the worker restarts
    await worker.stop()
    worker = await start_worker(harness, store, handler, spec)

    # Then the queue is still paused, and the message still waits
    assert worker.held == [spec.name]
    assert not worker.consumer.consuming
    await harness.holds(spec.name, 1)
    assert handler.calls == []

    # When the operator resumes it
    await command(harness, "resume", spec.name)

    # Then the waiting message is handled, once
    await eventually(lambda: worker.consumer.outcomes["processed"] == 1, what="the message")
    assert len(handler.calls) == 1
    assert await store.paused() == set()
    await worker.stop()


async def test_commands_apply_in_order_and_others_are_ignored(
    harness: Harness, namespace: str
) -> None:
    spec, other = harness.queue_spec(f"{namespace}.work"), harness.queue_spec(f"{namespace}.b")
    await harness.declare(spec, other)
    store = harness.pause_store()
    worker = await start_worker(harness, store, Recorder(), spec, other)

    # When a command names somebody else's queue, a body that is no command arrives, then
    # pause, resume, pause, resume follow each other at once, and last a pause of the other queue
    await command(harness, "pause", f"{namespace}.somebody-else")
    garbage = BrokerMessage(body=b"{oops", message_id=str(uuid.uuid4()))
    await harness.broker.publish(harness.exchanges.control, "", garbage)
    actions: list[Action] = ["pause", "resume", "pause", "resume"]
    for action in actions:
        await command(harness, action, spec.name)
    await command(harness, "pause", other.name)

    # Then, once the last one is applied, the queue is as the last command for it said, and
    # only the worker's own queues have a recorded state
    await eventually(lambda: not worker.consumers[other.name].consuming, what="the last command")
    assert worker.consumers[spec.name].consuming
    assert await store.paused() == {other.name}
    await worker.stop()


async def test_a_late_older_command_does_not_undo_a_newer_one(
    harness: Harness, namespace: str
) -> None:
    spec, other = harness.queue_spec(f"{namespace}.work"), harness.queue_spec(f"{namespace}.b")
    await harness.declare(spec, other)
    store = harness.pause_store()
    # Given two replicas of a worker sharing their service's stored state
    replicas = [await start_worker(harness, store, Recorder(), spec, other) for _ in range(2)]
    now = datetime.now(UTC)

    # When a pause arrives, and then a resume that the operator sent before it
    await command(harness, "pause", spec.name, at=now)
    await command(harness, "resume", spec.name, at=now - timedelta(seconds=5))
    # (and, to know both were applied, a pause of the other queue: commands apply in order)
    await command(harness, "pause", other.name)
    for replica in replicas:
        await eventually(lambda r=replica: not r.consumers[other.name].consuming, what="it")

    # Then both replicas stay paused, as the stored state says
    assert not any(replica.consumers[spec.name].consuming for replica in replicas)
    assert await store.paused() == {spec.name, other.name}
    for replica in replicas:
        await replica.stop()


async def test_a_command_nobody_hears_says_so(harness: Harness, namespace: str) -> None:
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)

    # Given no worker listening: the command reaches nobody, and the sender learns it
    with pytest.raises(NoListener):
        await command(harness, "pause", spec.name)

    # Given a worker that listened and stopped: its private queue went with it
    worker = await start_worker(harness, harness.pause_store(), Recorder(), spec)
    await command(harness, "resume", spec.name)
    await worker.stop()

    async def nobody_listens() -> bool:
        try:
            await command(harness, "resume", spec.name)
        except NoListener:
            return True
        return False

    await eventually(nobody_listens, timeout=10, interval=0.2, what="the control queue to go")

"""The timeline observer buffers and writes in batches, never on the delivery path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from shared.consumer.runtime import Observation
from shared.timeline import MessageLog, insert_parameters, log_row
from shared.topology import QueueSpec

SPEC = QueueSpec("verifier.documents", "verifier", ("application.submitted",))
AT = datetime(2026, 5, 1, tzinfo=UTC)


class FakeConnection:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool

    async def execute(self, statement: object, params: tuple[list[object], ...]) -> None:
        if self.pool.failing:
            raise OSError("database away")
        self.pool.batches.append(len(params[0]))


class FakePool:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.failing = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self)


def observation(message_id: str | None = "m1", outcome: str = "processed") -> Observation:
    return Observation(
        service="verifier",
        queue=SPEC,
        message_id=message_id,
        correlation_id="c",
        event_type="application.submitted",
        attempt=2,
        outcome=outcome,
        seconds=0.25,
        error_type="BlobMissing" if outcome == "retried" else None,
        error="gone" if outcome == "retried" else None,
    )


def test_a_row_per_delivery_with_the_time_it_was_observed() -> None:
    row = log_row(observation(outcome="retried"), AT)
    assert (row.message_id, row.queue, row.attempt, row.outcome) == (
        "m1",
        "verifier.documents",
        2,
        "retried",
    )
    assert (row.error_type, row.error, row.at) == ("BlobMissing", "gone", AT)
    assert log_row(observation(message_id=None), AT).message_id == ""
    columns = insert_parameters([row, row])
    assert len(columns) == 8 and all(len(column) == 2 for column in columns)


async def test_rows_are_written_in_batches_in_the_background() -> None:
    # Given a timeline writer with batches of 200
    pool = FakePool()
    timeline = MessageLog(pool, "verifier", flush_interval=0.05, batch_size=200)  # type: ignore[arg-type]
    timeline.start()

    # When 250 deliveries are observed
    for _ in range(250):
        await timeline.observe(observation())

    # Then nothing was written during the observations, then two batches soon after
    assert pool.batches in ([], [200])
    await asyncio.sleep(0.2)
    assert pool.batches == [200, 50]
    await timeline.close()


async def test_rows_wait_while_the_database_is_away_and_are_written_at_close() -> None:
    pool = FakePool()
    pool.failing = True
    timeline = MessageLog(pool, "verifier", flush_interval=0.01, max_buffered=3)  # type: ignore[arg-type]
    timeline.start()
    for index in range(5):
        await timeline.observe(observation(message_id=f"m{index}"))
    await asyncio.sleep(0.05)
    assert timeline.buffered == 3 and timeline.dropped == 2  # the oldest went first

    pool.failing = False
    await timeline.close()
    assert pool.batches == [3]
    assert timeline.buffered == 0

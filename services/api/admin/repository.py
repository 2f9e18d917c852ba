"""The admin routes' SQL. Reads go through the read-only ``ops`` pool, which sees only the
outbox, message_log and queue_controls of each service schema; the replay audit is the API's
own table, written through the API's pool."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from services.api.admin.views import (
    OutboxSourceView,
    PauseState,
    TimelineOutbox,
    TimelineStep,
)
from shared.outbox.backlog import read_backlog


async def outbox_backlog(
    conn: AsyncConnection[Any], schemas: Sequence[str]
) -> list[OutboxSourceView]:
    sources = []
    for schema in schemas:
        backlog = await read_backlog(conn, schema)
        sources.append(
            OutboxSourceView(
                source=schema,
                unpublished=backlog.unpublished,
                oldest_created_at=backlog.oldest_created_at,
                oldest_age_seconds=backlog.oldest_age_seconds,
                failing=backlog.failing,
            )
        )
    return sources


async def pause_states(conn: AsyncConnection[Any], schemas: Sequence[str]) -> dict[str, PauseState]:
    """Every queue's control row, whichever service schema holds it (queue names are unique)."""
    states: dict[str, PauseState] = {}
    for schema in schemas:
        query = sql.SQL("SELECT queue, paused, updated_at, updated_by FROM {}").format(
            sql.Identifier(schema, "queue_controls")
        )
        for queue, paused, updated_at, updated_by in await (await conn.execute(query)).fetchall():
            states[queue] = PauseState(queue, paused, updated_at, updated_by)
    return states


async def find_outbox_row(
    conn: AsyncConnection[Any], schemas: Sequence[str], message_id: str
) -> TimelineOutbox | None:
    try:
        key = uuid.UUID(message_id)
    except ValueError:
        return None  # outbox ids are UUIDs; a message without one never came from an outbox
    for schema in schemas:
        query = sql.SQL(
            "SELECT type, correlation_id, created_at, published_at, attempts"
            " FROM {} WHERE message_id = %s"
        ).format(sql.Identifier(schema, "outbox"))
        row = await (await conn.execute(query, (key,))).fetchone()
        if row is not None:
            kind, correlation_id, created_at, published_at, attempts = row
            return TimelineOutbox(
                source=schema,
                type=kind,
                correlation_id=correlation_id,
                created_at=created_at,
                published_at=published_at,
                publish_attempts=attempts,
            )
    return None


async def deliveries(
    conn: AsyncConnection[Any], schemas: Sequence[str], message_id: str
) -> list[TimelineStep]:
    steps = []
    for schema in schemas:
        query = sql.SQL(
            "SELECT at, outcome, queue, attempt, seconds, error_type, error"
            " FROM {} WHERE message_id = %s ORDER BY at, id"
        ).format(sql.Identifier(schema, "message_log"))
        for at, outcome, queue, attempt, seconds, error_type, error in await (
            await conn.execute(query, (message_id,))
        ).fetchall():
            steps.append(
                TimelineStep(
                    at=at,
                    step=outcome,
                    service=schema,
                    queue=queue,
                    attempt=attempt,
                    seconds=seconds,
                    error_type=error_type,
                    error=error,
                )
            )
    return steps


def timeline_steps(
    outbox: TimelineOutbox | None, consumed: list[TimelineStep]
) -> list[TimelineStep]:
    """Outbox created -> published -> every delivery, in time order."""
    steps = list(consumed)
    if outbox is not None:
        steps.append(TimelineStep(at=outbox.created_at, step="created", service=outbox.source))
        if outbox.published_at is not None:
            steps.append(
                TimelineStep(at=outbox.published_at, step="published", service=outbox.source)
            )
    order = {"created": 0, "published": 1}
    return sorted(steps, key=lambda step: (step.at, order.get(step.step, 2)))


async def record_replay(
    conn: AsyncConnection[Any],
    *,
    requested_by: str,
    queue: str,
    selector: dict[str, Any],
    dry_run: bool,
    message_ids: list[str],
) -> int:
    row = await (
        await conn.execute(
            "INSERT INTO replays (requested_by, queue, selector, dry_run, count, message_ids)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (requested_by, queue, Jsonb(selector), dry_run, len(message_ids), message_ids),
        )
    ).fetchone()
    assert row is not None
    return int(row[0])

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.sweeper import Sweeper, next_run


async def seed(pool: AsyncConnectionPool, schema: str) -> dict[str, str]:
    """Rows on both sides of a 1 hour retention; returns the ids that must survive."""
    ids = {
        name: str(uuid.uuid4())
        for name in (
            "old",
            "new",
            "old_unpublished",
            "old_published",
            "new_published",
            "old_log",
            "new_log",
        )
    }
    processed = sql.Identifier(schema, "processed_messages")
    outbox = sql.Identifier(schema, "outbox")
    timeline = sql.Identifier(schema, "message_log")
    async with pool.connection() as conn, conn.transaction():
        for name, age in (("old", "2 hours"), ("new", "10 minutes")):
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (consumer, message_id, processed_at)"
                    " VALUES ('q', %s, now() - %s::interval)"
                ).format(processed),
                (ids[name], age),
            )
        for name, created, published in (
            ("old_unpublished", "3 hours", None),
            ("old_published", "3 hours", "2 hours"),
            ("new_published", "3 hours", "10 minutes"),
        ):
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}"
                    " (message_id, type, correlation_id, body, created_at, published_at)"
                    " VALUES (%s, 't', 'c', '{{}}', now() - %s::interval, now() - %s::interval)"
                ).format(outbox),
                (ids[name], created, published),
            )
        for name, age in (("old_log", "2 hours"), ("new_log", "10 minutes")):
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} (message_id, queue, attempt, outcome, seconds, at)"
                    " VALUES (%s, 'q', 1, 'processed', 0.01, now() - %s::interval)"
                ).format(timeline),
                (ids[name], age),
            )
    return ids


async def remaining(pool: AsyncConnectionPool, schema: str) -> set[str]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                sql.SQL(
                    "SELECT message_id::text FROM {} UNION ALL SELECT message_id::text FROM {}"
                    " UNION ALL SELECT message_id FROM {}"
                ).format(
                    sql.Identifier(schema, "processed_messages"),
                    sql.Identifier(schema, "outbox"),
                    sql.Identifier(schema, "message_log"),
                )
            )
        ).fetchall()
    return {row[0] for row in rows}


async def test_only_rows_older_than_the_retention_go(
    pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await seed(pool, schema)
    sweeper = Sweeper(pool, schema, retention=timedelta(hours=1), batch_size=1)

    result = await sweeper.sweep_once()

    assert result.ran
    assert (result.processed_deleted, result.outbox_deleted, result.message_log_deleted) == (
        1,
        1,
        1,
    )
    assert await remaining(pool, schema) == {
        ids["new_log"],
        ids["new"],
        ids["old_unpublished"],
        ids["new_published"],
    }


async def test_one_of_two_concurrent_sweepers_does_the_work(
    pool: AsyncConnectionPool, schema: str
) -> None:
    ids = await seed(pool, schema)
    first = Sweeper(pool, schema, retention=timedelta(hours=1))
    second = Sweeper(pool, schema, retention=timedelta(hours=1))

    # Given the first sweeper is held up mid-sweep (a row it must delete is locked)
    async with pool.connection() as blocker:
        async with blocker.transaction():
            await blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE message_id = %s FOR UPDATE").format(
                    sql.Identifier(schema, "processed_messages")
                ),
                (ids["old"],),
            )
            first_run = asyncio.create_task(first.sweep_once())
            await asyncio.sleep(0.5)
            # When the second one starts meanwhile, it finds the lock taken and leaves
            assert (await second.sweep_once()).ran is False
        # Then the first finishes the work once released
        result = await first_run
    assert result.ran and result.processed_deleted == 1 and result.outbox_deleted == 1


def test_the_schedule_is_a_cron_expression() -> None:
    from datetime import UTC, datetime

    assert next_run("*/15 * * * *", datetime(2026, 1, 1, 10, 7, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )

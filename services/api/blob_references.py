"""Which blobs the API's rows still reference: what the blob sweeper (run by the projector,
which works as the API's role) must keep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from services.api.settings import ApiSettings
from shared.blob_sweeper import BlobSweeper, References


def referenced_in(
    pool: AsyncConnectionPool, schema: str, mailer_schema: str | None = None
) -> References:
    """Documents of applications, and report files whose download link has not expired
    (the mailer's ``report_status`` view, when there is a mailer): an expired report's file
    is swept."""
    query: sql.Composed = sql.SQL("SELECT sha256 FROM {} WHERE sha256 = ANY(%(hashes)s)").format(
        sql.Identifier(schema, "application_documents")
    )
    if mailer_schema is not None:
        query = sql.SQL(
            "{} UNION SELECT sha256 FROM {} WHERE sha256 = ANY(%(hashes)s)"
            " AND (expires_at IS NULL OR expires_at > now())"
        ).format(query, sql.Identifier(mailer_schema, "report_status"))

    async def referenced(hashes: Sequence[str]) -> set[str]:
        async with pool.connection() as conn:
            rows = await (await conn.execute(query, {"hashes": list(hashes)})).fetchall()
        return {str(sha256) for (sha256,) in rows}

    return referenced


def blob_sweeper(settings: ApiSettings, pool: AsyncConnectionPool) -> BlobSweeper:
    return BlobSweeper(
        settings.blob_dir,
        referenced_in(pool, settings.db_role, settings.mail_history_schema),
        grace=timedelta(minutes=settings.blob_orphan_grace_minutes),
        schedule=settings.sweeper_schedule,
    )

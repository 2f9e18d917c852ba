"""Reports on the low lane: ``report.requested`` -> a file in the blob store -> a mail with
its download link.

The rows never sit in this process's memory: the CSV comes from ``COPY (...) TO STDOUT`` and
is written to the blob store as it arrives (``BlobDraft``: hashed while written, then made
durable under its SHA-256); the XLSX from a server-side cursor in pages into xlsxwriter with
``constant_memory`` (one row in memory at a time). The count and the rows are read in one
REPEATABLE READ snapshot, so the count the status shows is the file's.

Progress (``report_runs``: running, done or failed, rows counted, bytes written) is written on
connections of its own in autocommit, so the API sees it while the message's transaction is
still open; the link and the mail are committed with the message. A report that fails is
marked failed with the reason, and the message goes where its error sends it (the low lane
dead-letters at the first failure: an administrator asks again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.mailer.catalog import report_email
from services.mailer.handler import Mailer, MailerWork
from services.mailer.report_queries import ReportQuery, ReportSources, report_query
from shared.blobs import BlobRef, BlobStore
from shared.consumer.runtime import MessageContext
from shared.events.catalog import ReportRequested

log = structlog.get_logger("mailer.reports")

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Progress is written at most this often while a file is being written.
PROGRESS_INTERVAL_SECONDS = 1.0
# COPY hands over one row per chunk: they are gathered up to this before each write.
WRITE_BUFFER_BYTES = 1024 * 1024
XLSX_PAGE_ROWS = 2000
MAX_REPORT_BYTES = 1 << 40

_START = """
INSERT INTO report_runs (report_id, status) VALUES (%s, 'running')
ON CONFLICT (report_id) DO UPDATE
SET status = 'running', error = NULL, started_at = now(), finished_at = NULL,
    rows_total = NULL, rows_written = NULL, bytes = NULL
"""
_PROGRESS = """
UPDATE report_runs SET rows_total = %s, rows_written = %s, bytes = %s WHERE report_id = %s
"""
_FAILED = (
    "UPDATE report_runs SET status = 'failed', error = %s, finished_at = now() WHERE report_id = %s"
)
# clock_timestamp(), not now(): in the message's transaction now() is when it began, before
# the file was built.

Progress = Callable[[int | None, int | None, int], Awaitable[None]]


@dataclass(frozen=True)
class BuiltReport:
    blob: BlobRef
    rows: int
    filename: str
    content_type: str


def download_url(api_public_url: str, report_id: str) -> str:
    return f"{api_public_url.rstrip('/')}/admin/reports/{report_id}/download"


@dataclass(frozen=True)
class ReportBuilder:
    mailer: Mailer
    # Autocommit connections of the builder's own: progress rows, and the snapshot it reads.
    pool: AsyncConnectionPool
    blobs: BlobStore
    sources: ReportSources
    link_ttl: timedelta

    async def handle(self, ctx: MessageContext[MailerWork], payload: ReportRequested) -> None:
        started = time.monotonic()
        await self._execute(_START, (payload.report_id,))
        try:
            rows, size = await self._build_and_mail(ctx, payload)
        except Exception as error:
            # The message's transaction rolls back; the status must not stay "running".
            await self._execute(_FAILED, (f"{type(error).__name__}: {error}", payload.report_id))
            raise
        log.info(
            "report built",
            report_id=payload.report_id,
            kind=payload.kind,
            format=payload.format,
            rows=rows,
            bytes=size,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _build_and_mail(
        self, ctx: MessageContext[MailerWork], payload: ReportRequested
    ) -> tuple[int, int]:
        built = await self.build(payload)
        expires_at = datetime.now(UTC) + self.link_ttl
        spec = report_email(
            payload,
            rows=built.rows,
            filename=built.filename,
            url=download_url(self.mailer.api_public_url, payload.report_id),
            expires_at=expires_at,
        )
        await self.mailer.send(ctx, spec)
        # Last, after everything that may fail: this row is locked by the message's
        # transaction until it commits, and marking the report failed (on another connection)
        # would wait for that lock for ever.
        await ctx.tx.report_runs.finish(
            payload.report_id,
            built.rows,
            built.blob,
            built.content_type,
            built.filename,
            expires_at,
        )
        return built.rows, built.blob.size

    async def build(self, payload: ReportRequested) -> BuiltReport:
        query = report_query(payload.kind, payload.filters, self.sources)
        progress = self._progress_writer(payload.report_id)
        async with self.pool.connection() as conn, conn.transaction():
            # One snapshot for the count and the rows; read-only: a report never writes.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # The XLSX rows come through a server-side cursor, planned by default for its
            # first rows; a report reads all of them.
            await conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            # Times in UTC in every file, whatever the server's zone (XLSX cells carry none).
            await conn.execute("SET LOCAL TimeZone = 'UTC'")
            rows = await _count(conn, query)
            await progress(rows, 0, 0)
            if payload.format == "xlsx":
                blob = await self._xlsx(conn, query, rows, progress)
            else:
                blob = await self._csv(conn, query, rows, progress)
        filename = f"{payload.kind}-{payload.report_id[:8]}.{payload.format}"
        return BuiltReport(blob, rows, filename, CONTENT_TYPES[payload.format])

    async def _csv(
        self, conn: AsyncConnection[Any], query: ReportQuery, rows: int, progress: Progress
    ) -> BlobRef:
        draft = self.blobs.draft()
        buffer = bytearray()
        try:
            async with conn.cursor().copy(query.copy_csv()) as copy:
                async for chunk in copy:
                    buffer += chunk
                    if len(buffer) >= WRITE_BUFFER_BYTES:
                        draft.write(bytes(buffer))
                        buffer.clear()
                        await progress(rows, None, draft.size)
            draft.write(bytes(buffer))
            staged = draft.seal()
        except BaseException:
            draft.discard()
            raise
        await asyncio.to_thread(self.blobs.publish, [staged])
        return staged.ref

    async def _xlsx(
        self, conn: AsyncConnection[Any], query: ReportQuery, rows: int, progress: Progress
    ) -> BlobRef:
        from services.mailer.xlsx import XlsxWriter  # only reports in XLSX need the library

        # A temporary name the blob sweeper recognises: a process killed mid-file leaves
        # nothing behind for good.
        path = Path(f"{self.blobs.temp_name()}.xlsx")  # its folder created if need be
        try:
            sheet = XlsxWriter(path, query.columns)
            written = 0
            async with conn.cursor(name="report") as cursor:
                await cursor.execute(query.select)
                while page := await cursor.fetchmany(XLSX_PAGE_ROWS):
                    # A page's cells are formatted and written to disk off the event loop,
                    # which serves the other lanes meanwhile.
                    await asyncio.to_thread(sheet.write_rows, page)
                    written += len(page)
                    await progress(rows, written, 0)
            await asyncio.to_thread(sheet.close)
            return await asyncio.to_thread(self._store, path)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    def _store(self, path: Path) -> BlobRef:
        with path.open("rb") as source:
            return self.blobs.put(source, MAX_REPORT_BYTES)

    def _progress_writer(self, report_id: str) -> Progress:
        last = 0.0

        async def write(total: int | None, written: int | None, size: int) -> None:
            nonlocal last
            now = time.monotonic()
            if written not in (None, 0) and now - last < PROGRESS_INTERVAL_SECONDS:
                return
            if size and now - last < PROGRESS_INTERVAL_SECONDS:
                return
            last = now
            await self._execute(_PROGRESS, (total, written, size, report_id))

        return write

    async def _execute(self, statement: str, params: tuple[object, ...]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(statement, params)


async def _count(conn: AsyncConnection[Any], query: ReportQuery) -> int:
    row = await (await conn.execute(query.count())).fetchone()
    return int(row[0]) if row else 0

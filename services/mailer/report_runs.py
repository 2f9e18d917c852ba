"""A report run's last word, in the message's transaction: done, with its file and link.

(Its start, progress and failure are written by the builder on connections of its own, in
autocommit, so that the API sees them while the message's transaction is open:
``services.mailer.reports``.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from psycopg import AsyncConnection

from shared.blobs import BlobRef

_DONE = """
UPDATE report_runs
SET status = 'done', rows_total = %(rows)s, rows_written = %(rows)s, bytes = %(bytes)s,
    sha256 = %(sha256)s, content_type = %(content_type)s, filename = %(filename)s,
    finished_at = clock_timestamp(), expires_at = %(expires_at)s
WHERE report_id = %(report_id)s
"""


class ReportRuns(Protocol):
    async def finish(
        self,
        report_id: str,
        rows: int,
        blob: BlobRef,
        content_type: str,
        filename: str,
        expires_at: datetime,
    ) -> None: ...


class PostgresReportRuns:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def finish(
        self,
        report_id: str,
        rows: int,
        blob: BlobRef,
        content_type: str,
        filename: str,
        expires_at: datetime,
    ) -> None:
        await self.connection.execute(
            _DONE,
            {
                "report_id": report_id,
                "rows": rows,
                "bytes": blob.size,
                "sha256": blob.sha256,
                "content_type": content_type,
                "filename": filename,
                "expires_at": expires_at,
            },
        )

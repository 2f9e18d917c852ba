"""What the admin's long-running requests (reports, announcements) share: a request row and
its event committed in one transaction, answered ``202`` with a status URL (as a submission
is); and a status read as one row joining the request with the mailer's view of its work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response, status
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from services.api.auth.dependencies import require_admin
from services.api.resources import Resources
from shared.events.catalog import EventPayload
from shared.events.envelope import new_envelope
from shared.outbox.writer import write_outbox

ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body could not be parsed"},
    401: {"description": "not authenticated"},
    403: {"description": "not an admin"},
}


def admin_router(prefix: str) -> APIRouter:
    return APIRouter(
        prefix=prefix,
        tags=["admin"],
        dependencies=[Depends(require_admin)],
        responses=ADMIN_RESPONSES,
    )


async def accept(
    deps: Resources,
    response: Response,
    *,
    insert: str,
    row: Sequence[object],
    event: EventPayload,
    correlation: str,
    status_url: str,
) -> None:
    """The request's row and its event, committed together; ``Location`` set to its status."""
    async with deps.connection() as conn, conn.transaction():
        await conn.execute(insert, row)
        await write_outbox(
            conn, deps.outbox_schema, [new_envelope(event, correlation_id=correlation)]
        )
    response.headers["Location"] = status_url


async def read_status(
    conn: AsyncConnection[Any], query: sql.Composed, request_id: object, what: str
) -> dict[str, Any]:
    """The one row of ``query`` for ``request_id``, or 404 naming ``what``."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, (request_id,))
        found = await cursor.fetchone()
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")
    return found

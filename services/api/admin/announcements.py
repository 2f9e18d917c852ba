"""``/admin/announcements``: an administrator publishes a mail to many applicants, watches its
progress and may cancel it.

``POST`` answers 202 with a status URL: the announcement and its ``announcement.published``
event are committed together; the mailer's batch lane finds the recipients, then mails each at
the lane's rate (``services.mailer.announcements``). Progress is read from the mailer's
``announcement_progress`` view. Cancelling marks the announcement; the mailer reads the mark
before every mail, so what is not yet sent is not sent (the rest are counted as skipped).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Response, status
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from pydantic import Field

from services.api.admin.requests import accept, admin_router, read_status
from services.api.admin.views import View, mailer_schema
from services.api.auth.dependencies import AdminUser
from services.api.resources import Resources, request_id, resources
from shared.events.catalog import AnnouncementPublished, Audience

router = admin_router("/admin/announcements")
Deps = Annotated[Resources, Depends(resources)]
RequestId = Annotated[str, Depends(request_id)]

AnnouncementState = Literal["queued", "sending", "done", "cancelled"]


class AnnouncementRequest(View):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=50_000)
    audience: Audience = Field(default_factory=Audience)


class AnnouncementAccepted(View):
    announcement_id: str
    status_url: str
    detail: str


class AnnouncementAction(View):
    action: Literal["cancel"]


class AnnouncementView(View):
    announcement_id: str
    subject: str
    audience: dict[str, Any]
    created_by: str
    created_at: datetime
    status: AnnouncementState
    total: int | None = None  # recipients found (None until the batch lane expanded it)
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # cancelled before their turn, or unsubscribed since
    cancelled_at: datetime | None = None
    last_update: datetime | None = None


def announcement_url(public_url: str, announcement_id: str) -> str:
    return f"{public_url}/admin/announcements/{announcement_id}"


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=AnnouncementAccepted)
async def publish_announcement(
    body: AnnouncementRequest,
    admin: AdminUser,
    deps: Deps,
    correlation: RequestId,
    response: Response,
) -> AnnouncementAccepted:
    announcement_id = str(uuid.uuid4())
    event = AnnouncementPublished(
        announcement_id=announcement_id,
        subject=body.subject,
        body=body.body,
        audience=body.audience,
    )
    url = announcement_url(deps.settings.public_url, announcement_id)
    await accept(
        deps,
        response,
        insert="INSERT INTO announcements (id, subject, body, audience, created_by)"
        " VALUES (%s, %s, %s, %s, %s)",
        row=(
            announcement_id,
            body.subject,
            body.body,
            Jsonb(body.audience.model_dump(mode="json")),
            admin.email,
        ),
        event=event,
        correlation=correlation,
        status_url=url,
    )
    return AnnouncementAccepted(
        announcement_id=announcement_id,
        status_url=url,
        detail="the announcement is queued on the batch lane",
    )


@router.get("/{announcement_id}", response_model=AnnouncementView)
async def announcement_status(announcement_id: uuid.UUID, deps: Deps) -> AnnouncementView:
    async with deps.connection() as conn:
        return await _view(conn, mailer_schema(deps), announcement_id)


@router.post("/{announcement_id}", response_model=AnnouncementView)
async def act_on_announcement(
    announcement_id: uuid.UUID, body: AnnouncementAction, admin: AdminUser, deps: Deps
) -> AnnouncementView:
    """``{"action": "cancel"}``: no more mails of it go out (idempotent)."""
    return await cancel_announcement(announcement_id, admin, deps)


@router.post("/{announcement_id}/cancel", response_model=AnnouncementView)
async def cancel_announcement(
    announcement_id: uuid.UUID, admin: AdminUser, deps: Deps
) -> AnnouncementView:
    async with deps.connection() as conn:
        await conn.execute(
            "UPDATE announcements SET cancelled_at = now(), cancelled_by = %s"
            " WHERE id = %s AND cancelled_at IS NULL",
            (admin.email, announcement_id),
        )
        return await _view(conn, mailer_schema(deps), announcement_id)


async def _view(
    conn: AsyncConnection[Any], mailer_schema: str, announcement_id: uuid.UUID
) -> AnnouncementView:
    query = sql.SQL(
        "SELECT a.id, a.subject, a.audience, a.created_by, a.created_at, a.cancelled_at,"
        " p.total, p.sent, p.failed, p.skipped, p.last_update"
        " FROM announcements a LEFT JOIN {} p ON p.announcement_id = a.id WHERE a.id = %s"
    ).format(sql.Identifier(mailer_schema, "announcement_progress"))
    row = await read_status(conn, query, announcement_id, "announcement")
    sent, failed, skipped = row["sent"] or 0, row["failed"] or 0, row["skipped"] or 0
    return AnnouncementView(
        announcement_id=str(row["id"]),
        subject=row["subject"],
        audience=row["audience"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        status=announcement_state(row["total"], sent + failed + skipped, row["cancelled_at"]),
        total=row["total"],
        sent=sent,
        failed=failed,
        skipped=skipped,
        cancelled_at=row["cancelled_at"],
        last_update=row["last_update"],
    )


def announcement_state(
    total: int | None, settled: int, cancelled_at: datetime | None
) -> AnnouncementState:
    if total is not None and settled >= total:
        return "done"
    if cancelled_at is not None:
        return "cancelled"
    return "queued" if total is None else "sending"

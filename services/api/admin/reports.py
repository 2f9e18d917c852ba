"""``/admin/reports``: an administrator asks for a report, watches it, downloads it.

``POST`` answers 202 with a status URL, as a submission does: the request row and its
``report.requested`` event are committed together, and the mailer's low lane builds the file
(``services.mailer.reports``). The status joins the request with the mailer's ``report_status``
view; the file is served from the blob store to an administrator until the link expires.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Response, status
from fastapi.responses import FileResponse
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from pydantic import Field

from services.api.admin.requests import accept, admin_router, read_status
from services.api.admin.views import View, mailer_schema
from services.api.auth.dependencies import AdminUser
from services.api.resources import Resources, request_id, resources
from shared.events.catalog import ReportFilters, ReportFormat, ReportKind, ReportRequested

router = admin_router("/admin/reports")
Deps = Annotated[Resources, Depends(resources)]
RequestId = Annotated[str, Depends(request_id)]

ReportState = Literal["queued", "running", "done", "failed", "expired"]


class ReportRequest(View):
    kind: ReportKind
    format: ReportFormat = "csv"
    filters: ReportFilters = Field(default_factory=ReportFilters)


class ReportAccepted(View):
    report_id: str
    status_url: str
    detail: str


class ReportView(View):
    report_id: str
    kind: str
    format: str
    filters: dict[str, Any]
    requested_by: str
    requested_at: datetime
    status: ReportState
    rows_total: int | None = None
    rows_written: int | None = None
    bytes: int | None = None
    filename: str | None = None
    download_url: str | None = None
    expires_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


def report_url(public_url: str, report_id: str) -> str:
    return f"{public_url}/admin/reports/{report_id}"


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ReportAccepted)
async def request_report(
    body: ReportRequest, admin: AdminUser, deps: Deps, correlation: RequestId, response: Response
) -> ReportAccepted:
    report_id = str(uuid.uuid4())
    event = ReportRequested(
        report_id=report_id,
        kind=body.kind,
        format=body.format,
        filters=body.filters,
        recipient=admin.email,
    )
    url = report_url(deps.settings.public_url, report_id)
    await accept(
        deps,
        response,
        insert="INSERT INTO reports (id, kind, format, filters, requested_by)"
        " VALUES (%s, %s, %s, %s, %s)",
        row=(
            report_id,
            body.kind,
            body.format,
            Jsonb(body.filters.model_dump(mode="json", exclude_none=True)),
            admin.email,
        ),
        event=event,
        correlation=correlation,
        status_url=url,
    )
    return ReportAccepted(
        report_id=report_id,
        status_url=url,
        detail=f"the report is being built; a link will be mailed to {admin.email}",
    )


@router.get("/{report_id}", response_model=ReportView)
async def report_status(report_id: uuid.UUID, deps: Deps) -> ReportView:
    async with deps.connection() as conn:
        row = await _report(conn, mailer_schema(deps), report_id)
    return _view(row, deps.settings.public_url)


@router.get(
    "/{report_id}/download",
    response_class=FileResponse,
    responses={
        404: {"description": "no such report, or not built yet"},
        410: {"description": "expired"},
    },
)
async def download_report(report_id: uuid.UUID, deps: Deps) -> FileResponse:
    async with deps.connection() as conn:
        row = await _report(conn, mailer_schema(deps), report_id)
    view = _view(row, deps.settings.public_url)
    if view.status == "expired":
        raise HTTPException(status.HTTP_410_GONE, "the report's link has expired; ask again")
    if view.status != "done":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the report is {view.status}")
    path = deps.blobs.locate(row["sha256"])
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, "the report's file is gone; ask again")
    return FileResponse(path, media_type=row["content_type"], filename=row["filename"])


async def _report(
    conn: AsyncConnection[Any], mailer_schema: str, report_id: uuid.UUID
) -> dict[str, Any]:
    query = sql.SQL(
        "SELECT r.id, r.kind, r.format, r.filters, r.requested_by, r.created_at,"
        " s.status, s.rows_total, s.rows_written, s.bytes, s.sha256, s.content_type,"
        " s.filename, s.error, s.finished_at, s.expires_at"
        " FROM reports r LEFT JOIN {} s ON s.report_id = r.id WHERE r.id = %s"
    ).format(sql.Identifier(mailer_schema, "report_status"))
    return await read_status(conn, query, report_id, "report")


def report_state(row: dict[str, Any], now: datetime) -> ReportState:
    state: ReportState = row["status"] or "queued"
    if state == "done" and row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    return state


def _view(row: dict[str, Any], public_url: str) -> ReportView:
    state = report_state(row, datetime.now(UTC))
    report_id = str(row["id"])
    return ReportView(
        report_id=report_id,
        kind=row["kind"],
        format=row["format"],
        filters=row["filters"],
        requested_by=row["requested_by"],
        requested_at=row["created_at"],
        status=state,
        rows_total=row["rows_total"],
        rows_written=row["rows_written"],
        bytes=row["bytes"],
        filename=row["filename"],
        download_url=f"{report_url(public_url, report_id)}/download" if state == "done" else None,
        expires_at=row["expires_at"],
        finished_at=row["finished_at"],
        error=row["error"],
    )

"""``/admin``: queues, outbox backlog, dead letters and replay, pause/resume, timelines.

Administrators only (JWT role "admin"): no token answers 401, another role 403. Every route
is a thin adapter: the decisions live in ``fingerprints``, ``replay`` and ``overview``.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Annotated

import psycopg
import structlog
from fastapi import APIRouter, Depends, HTTPException, status

from services.api.admin import repository
from services.api.admin.dead_letters import Scan
from services.api.admin.fingerprints import group_dead_letters
from services.api.admin.management import ManagementUnavailable, QueueStats
from services.api.admin.overview import listening_workers, queue_overview
from services.api.admin.replay import Selector
from services.api.admin.resources import (
    AdminResources,
    admin_lifespan,
    admin_resources,
    unavailable,
)
from services.api.admin.views import (
    ControlAccepted,
    DeadLetterDetail,
    DeadLetterQueueScan,
    DeadLetterSummary,
    DeadLettersView,
    FailureGroupView,
    OutboxView,
    PauseState,
    QueuesView,
    ReplayRequest,
    ReplayResult,
    TimelineView,
)
from services.api.auth.dependencies import AdminUser, require_admin
from services.api.resources import Resources, resources
from shared.control import Action, NoListener, new_command, send_command
from shared.errors import MissingQueue
from shared.topology import QueueSpec, dead_letter_queue_name

log = structlog.get_logger("api.admin")

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    lifespan=admin_lifespan,
    responses={401: {"description": "not authenticated"}, 403: {"description": "not an admin"}},
)
Admin = Annotated[AdminResources, Depends(admin_resources)]
Deps = Annotated[Resources, Depends(resources)]


def work_queue(admin: AdminResources, name: str) -> QueueSpec:
    """A work queue of the topology by name (its DLQ's name is accepted too); else 404."""
    name = name.removesuffix(".dlq")
    try:
        return admin.topology.queue(name)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no work queue named {name!r}") from None


async def broker_stats(admin: AdminResources) -> dict[str, QueueStats]:
    try:
        return await admin.management.queues()
    except ManagementUnavailable as error:
        raise unavailable("the RabbitMQ management API", error) from error


@router.get("/queues", response_model=QueuesView)
async def queues(admin: Admin) -> QueuesView:
    stats = await broker_stats(admin)
    pauses: dict[str, PauseState] | None
    try:
        async with (await admin.ops_pool()).connection() as conn:
            pauses = await repository.pause_states(conn, admin.ops_schemas)
    except (HTTPException, psycopg.Error) as error:
        # Depths matter most in an outage: answer them, with "paused" unknown.
        log.warning("pause states unreadable", error=repr(error))
        pauses = None
    return QueuesView(
        vhost=admin.management.vhost, queues=queue_overview(admin.topology, stats, pauses)
    )


async def _control(
    admin: AdminResources, queue: str, action: Action, requested_by: str
) -> ControlAccepted:
    spec = work_queue(admin, queue)
    command = new_command(action, spec.name, requested_by, datetime.now(UTC))
    try:
        await send_command(await admin.ops_broker(), admin.topology.exchanges.control, command)
    except NoListener as error:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{error}; nothing changed") from None
    try:
        listeners: int | None = listening_workers(spec.service, await admin.management.queues())
    except ManagementUnavailable as error:  # the command is out: answer 202 all the same
        log.warning("listeners unknown", error=str(error))
        listeners = None
    if listeners == 0:
        detail = f"no {spec.service} worker is listening now: the command reached none of them"
    else:
        detail = f"sent to the {spec.service} workers; {spec.name} is {action}d once they apply it"
    log.info("queue control sent", queue=spec.name, action=action, by=requested_by)
    return ControlAccepted(
        command_id=command.message_id,
        queue=spec.name,
        action=action,
        service=spec.service,
        listeners=listeners,
        detail=detail,
    )


@router.post(
    "/queues/{queue}/pause",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ControlAccepted,
    responses={404: {"description": "no such work queue"}},
)
async def pause(queue: str, admin: Admin, user: AdminUser) -> ControlAccepted:
    """Stop the queue's consumers in every worker of its service; it stays paused across
    restarts until resumed. Messages wait in the queue meanwhile."""
    return await _control(admin, queue, "pause", user.email)


@router.post(
    "/queues/{queue}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ControlAccepted,
    responses={404: {"description": "no such work queue"}},
)
async def resume(queue: str, admin: Admin, user: AdminUser) -> ControlAccepted:
    return await _control(admin, queue, "resume", user.email)


@router.get("/outbox", response_model=OutboxView)
async def outbox(admin: Admin) -> OutboxView:
    try:
        async with (await admin.ops_pool()).connection() as conn:
            return OutboxView(sources=await repository.outbox_backlog(conn, admin.ops_schemas))
    except psycopg.Error as error:
        raise unavailable("the operations database role", error) from error


async def _scan(admin: AdminResources, spec: QueueSpec) -> Scan:
    dead_letter_queues = await admin.dead_letter_queues()
    try:
        return await dead_letter_queues.scan(spec.name, admin.settings.admin_dead_letter_scan)
    except MissingQueue:
        return Scan([], 0)


@router.get("/dead-letters", response_model=DeadLettersView)
async def dead_letters(admin: Admin) -> DeadLettersView:
    """Every DLQ read without removing anything, grouped by failure fingerprint."""
    specs = admin.topology.queues
    scans = await asyncio.gather(*(_scan(admin, spec) for spec in specs))
    groups = group_dead_letters(letter for scan in scans for letter in scan.letters)
    return DeadLettersView(
        groups=[
            FailureGroupView(
                fingerprint=group.fingerprint,
                queue=group.queue,
                error_type=group.error_type,
                message=group.message,
                count=group.count,
                first_seen=group.first_seen,
                last_seen=group.last_seen,
                sample=DeadLetterSummary(
                    message_id=group.sample.message_id,
                    type=group.sample.type,
                    error_message=group.sample.error_message,
                    dead_lettered_at=group.sample.dead_lettered_at,
                ),
            )
            for group in groups
        ],
        queues=[
            DeadLetterQueueScan(
                queue=spec.name,
                dead_letter_queue=dead_letter_queue_name(spec.name),
                scanned=len(scan.letters),
                complete=scan.complete,
            )
            for spec, scan in zip(specs, scans, strict=True)
        ],
    )


@router.get(
    "/dead-letters/{queue}/{message_id}",
    response_model=DeadLetterDetail,
    responses={404: {"description": "no such queue, or no such message in its DLQ"}},
)
async def dead_letter(queue: str, message_id: str, admin: Admin) -> DeadLetterDetail:
    spec = work_queue(admin, queue)
    try:
        found = await (await admin.dead_letter_queues()).find(
            spec.name, message_id, admin.settings.admin_dead_letter_scan
        )
    except MissingQueue:
        found = None
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no message {message_id!r} in {spec.name}.dlq"
        )
    try:
        body, encoding = found.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(found.body).decode(), "base64"
    return DeadLetterDetail(
        queue=spec.name,
        message_id=found.message_id,
        type=found.type,
        content_type=found.content_type,
        correlation_id=found.correlation_id,
        fingerprint=found.fingerprint,
        headers=dict(found.headers),
        body=body,
        body_encoding="utf-8" if encoding == "utf-8" else "base64",
    )


@router.post(
    "/dead-letters/replay",
    response_model=ReplayResult,
    responses={
        400: {"description": "the body could not be parsed"},
        404: {"description": "no such work queue"},
    },
)
async def replay(request: ReplayRequest, admin: Admin, deps: Deps, user: AdminUser) -> ReplayResult:
    """Send selected dead letters back to their work queue at a bounded rate (a dry run only
    reports what would move). Every call is recorded in ``api.replays``."""
    spec = work_queue(admin, request.queue)
    selector = Selector(
        message_ids=frozenset(request.message_ids) if request.message_ids is not None else None,
        fingerprint=request.fingerprint,
        all=request.all,
    )
    try:
        outcome = await (await admin.dead_letter_queues()).replay(
            spec.name,
            selector,
            dry_run=request.dry_run,
            rate_per_second=request.rate_per_second,
            limit=admin.settings.admin_dead_letter_scan,
            replayed_by=user.email,
        )
    except MissingQueue as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{error} does not exist yet") from None
    async with deps.connection() as conn:
        replay_id = await repository.record_replay(
            conn,
            requested_by=user.email,
            queue=spec.name,
            selector=selector.describe(),
            dry_run=request.dry_run,
            message_ids=outcome.selected,
        )
    log.info(
        "dead letters replayed" if not request.dry_run else "dead-letter replay dry run",
        queue=spec.name,
        selector=selector.describe(),
        count=len(outcome.selected),
        by=user.email,
        stopped_early=outcome.stopped_early,
    )
    return ReplayResult(
        replay_id=replay_id,
        queue=spec.name,
        dry_run=request.dry_run,
        selector=selector.describe(),
        count=len(outcome.selected),
        message_ids=outcome.selected,
        scanned=outcome.scanned,
        stopped_early=outcome.stopped_early,
    )


@router.get(
    "/messages/{message_id}/timeline",
    response_model=TimelineView,
    responses={404: {"description": "no outbox row and no delivery for this message id"}},
)
async def timeline(message_id: str, admin: Admin) -> TimelineView:
    """Outbox created -> published -> each consumer's deliveries (attempt, outcome, duration)."""
    try:
        async with (await admin.ops_pool()).connection() as conn:
            outbox_row = await repository.find_outbox_row(conn, admin.ops_schemas, message_id)
            consumed = await repository.deliveries(conn, admin.ops_schemas, message_id)
    except psycopg.Error as error:
        raise unavailable("the operations database role", error) from error
    if outbox_row is None and not consumed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"nothing known about {message_id!r}")
    return TimelineView(
        message_id=message_id,
        outbox=outbox_row,
        steps=repository.timeline_steps(outbox_row, consumed),
    )

"""What the admin routes read and answer (JSON in camelCase, like the rest of the API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from fastapi import HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from services.api.resources import Resources


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def mailer_schema(deps: Resources) -> str:
    """Where the mailer's views are (reports, announcements); 503 when none is configured."""
    schema = deps.settings.mail_history_schema
    if schema is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no mailer schema configured (MAIL_HISTORY_SCHEMA)"
        )
    return schema


@dataclass(frozen=True)
class PauseState:
    """A row of a service's ``queue_controls``."""

    queue: str
    paused: bool
    updated_at: datetime
    updated_by: str


# --- /admin/queues ---------------------------------------------------------------------------


class RetryTierView(View):
    name: str
    delay_seconds: float
    messages: int


class DepthView(View):
    name: str
    messages: int


class QueueView(View):
    name: str
    service: str
    lane: str | None
    ready: int
    unacked: int
    consumers: int
    publish_rate: float
    deliver_rate: float
    paused: bool | None  # null: the pause states could not be read
    paused_by: str | None = None
    paused_at: datetime | None = None
    retry_tiers: list[RetryTierView]
    dead_letters: DepthView


class QueuesView(View):
    vhost: str
    queues: list[QueueView]


class ControlAccepted(View):
    command_id: str
    queue: str
    action: Literal["pause", "resume"]
    service: str
    listeners: int | None  # worker processes of the service listening; null: unknown
    detail: str


# --- /admin/outbox ---------------------------------------------------------------------------


class OutboxSourceView(View):
    source: str
    unpublished: int
    oldest_created_at: datetime | None
    oldest_age_seconds: float | None
    failing: int  # unpublished rows whose publication already failed at least once


class OutboxView(View):
    sources: list[OutboxSourceView]


# --- /admin/dead-letters ---------------------------------------------------------------------


class DeadLetterSummary(View):
    message_id: str
    type: str | None
    error_message: str
    dead_lettered_at: datetime | None


class FailureGroupView(View):
    fingerprint: str
    queue: str
    error_type: str
    message: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    sample: DeadLetterSummary


class DeadLetterQueueScan(View):
    queue: str
    dead_letter_queue: str
    scanned: int
    complete: bool  # False: the DLQ holds more than the scan limit


class DeadLettersView(View):
    groups: list[FailureGroupView]
    queues: list[DeadLetterQueueScan]


class DeadLetterDetail(View):
    queue: str
    message_id: str
    type: str | None
    content_type: str | None
    correlation_id: str | None
    fingerprint: str
    headers: dict[str, Any]
    body: str
    body_encoding: Literal["utf-8", "base64"]


class ReplayRequest(View):
    queue: str = Field(min_length=1, max_length=200)
    message_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=64)
    all: bool = False
    dry_run: bool
    rate_per_second: float = Field(default=50.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def one_selector(self) -> ReplayRequest:
        chosen = [self.message_ids is not None, self.fingerprint is not None, self.all]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one of messageIds, fingerprint or all: true")
        return self


class ReplayResult(View):
    replay_id: int
    queue: str
    dry_run: bool
    selector: dict[str, Any]
    count: int  # moved, or in a dry run: would move
    message_ids: list[str]
    scanned: int
    stopped_early: str | None = None


# --- /admin/messages/{id}/timeline -----------------------------------------------------------


class TimelineOutbox(View):
    source: str
    type: str
    correlation_id: str
    created_at: datetime
    published_at: datetime | None
    publish_attempts: int


class TimelineStep(View):
    at: datetime
    step: str  # created | published | processed | duplicate | retried | dead-lettered | requeued
    service: str
    queue: str | None = None
    attempt: int | None = None
    seconds: float | None = None
    error_type: str | None = None
    error: str | None = None


class TimelineView(View):
    message_id: str
    outbox: TimelineOutbox | None
    steps: list[TimelineStep]

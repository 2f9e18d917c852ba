"""What clients read about their applications (JSON in camelCase, like the submit answer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from services.api.statuses import Status

PaymentStatus = Literal["not_started", "pending", "completed", "failed"]


class View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SubmissionAccepted(View):
    application_id: str
    status: str
    status_url: str
    pay_url: str


def submission_answer(public_url: str, application_id: str, status: Status) -> dict[str, str]:
    """The body of a 202 (``SubmissionAccepted`` by alias), built without a model on the
    hot path."""
    return {
        "applicationId": application_id,
        "status": status.value,
        "statusUrl": status_url(public_url, application_id),
        "payUrl": pay_url(public_url, application_id),
    }


class CheckoutReady(View):
    checkout_url: str


class DocumentView(View):
    document_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class HistoryEntryView(View):
    status: str
    progress: int
    at: datetime
    event_type: str
    message_id: str | None = None
    note: str | None = None


class PaymentView(View):
    status: PaymentStatus
    checkout_url: str | None
    payment_id: str | None


class ApplicationSummary(View):
    application_id: str
    program: str
    status: str
    progress: int
    created_at: datetime
    updated_at: datetime
    status_url: str


class ApplicationDetail(ApplicationSummary):
    personal_statement: str
    documents: list[DocumentView]
    payment: PaymentView


class ApplicationStatusView(View):
    application_id: str
    status: str
    progress: int
    updated_at: datetime
    documents: list[DocumentView]
    payment: PaymentView
    history: list[HistoryEntryView]


def payment_status(status: str, payment_completed: bool, checkout_url: str | None) -> PaymentStatus:
    if payment_completed:
        return "completed"
    if status == Status.PAYMENT_FAILED:
        return "failed"
    if checkout_url:
        return "pending"
    return "not_started"


def payment_view(row: dict[str, Any]) -> PaymentView:
    return PaymentView(
        status=payment_status(row["status"], row["payment_completed"], row["checkout_url"]),
        checkout_url=row["checkout_url"],
        payment_id=row["payment_id"],
    )


def summary(row: dict[str, Any], public_url: str) -> ApplicationSummary:
    application_id = str(row["id"])
    return ApplicationSummary(
        application_id=application_id,
        program=row["program"],
        status=row["status"],
        progress=row["progress"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status_url=status_url(public_url, application_id),
    )


def detail(row: dict[str, Any], public_url: str) -> ApplicationDetail:
    return ApplicationDetail(
        **summary(row, public_url).model_dump(),
        personal_statement=row["personal_statement"],
        documents=[DocumentView.model_validate(d) for d in row["documents"]],
        payment=payment_view(row),
    )


def status_view(row: dict[str, Any]) -> ApplicationStatusView:
    return ApplicationStatusView(
        application_id=str(row["id"]),
        status=row["status"],
        progress=row["progress"],
        updated_at=row["updated_at"],
        documents=[DocumentView.model_validate(d) for d in row["documents"]],
        payment=payment_view(row),
        history=[HistoryEntryView.model_validate(h) for h in row["history"]],
    )


def status_url(public_url: str, application_id: str) -> str:
    return f"{public_url}/applications/{application_id}/status"


def pay_url(public_url: str, application_id: str) -> str:
    return f"{public_url}/payments/checkout/{application_id}"


def location(application_id: str) -> str:
    return f"/applications/{application_id}"

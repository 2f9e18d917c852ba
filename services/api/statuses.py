"""An application's statuses, in the order it moves through them, and their progress."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SUBMITTED = "submitted"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    PROCESSING_PAYMENT = "processing_payment"
    AWAITING_PAYMENT = "awaiting_payment"
    COMPLETED = "completed"
    VERIFICATION_FAILED = "verification_failed"
    PAYMENT_FAILED = "payment_failed"


# The way forward; a status only ever moves to one further down this list.
FORWARD: tuple[Status, ...] = (
    Status.SUBMITTED,
    Status.VERIFYING,
    Status.VERIFIED,
    Status.PROCESSING_PAYMENT,
    Status.AWAITING_PAYMENT,
    Status.COMPLETED,
)
PROGRESS: dict[Status, int] = {
    Status.SUBMITTED: 25,
    Status.VERIFYING: 30,
    Status.VERIFIED: 50,
    Status.PROCESSING_PAYMENT: 55,
    Status.AWAITING_PAYMENT: 75,
    Status.COMPLETED: 100,
}
TERMINAL = frozenset({Status.COMPLETED, Status.VERIFICATION_FAILED, Status.PAYMENT_FAILED})

"""What happens to a message that failed: pure functions, no I/O.

The attempt number travels in our own header (``x-attempt``), not in ``x-death``, whose
shape changed between RabbitMQ 3.13 and 4.x. The first delivery has no header: attempt 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.broker.base import Headers, HeaderValue
from shared.errors import PermanentError
from shared.topology import QueueSpec

ATTEMPT = "x-attempt"
FIRST_SEEN = "x-first-seen"
LAST_ERROR = "x-last-error"
ERROR_SERVICE = "x-error-service"
ERROR_QUEUE = "x-error-queue"
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ERROR_ATTEMPT = "x-error-attempt"
ERROR_KIND = "x-error-kind"
DEAD_LETTERED_AT = "x-dead-lettered-at"

_MAX_ERROR_TEXT = 500


@dataclass(frozen=True)
class Retry:
    delay: float
    next_attempt: int


PERMANENT = "permanent"
EXHAUSTED = "attempts-exhausted"


@dataclass(frozen=True)
class DeadLetter:
    kind: str  # PERMANENT | EXHAUSTED


def attempt_of(headers: Headers) -> int:
    value = headers.get(ATTEMPT)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return 1


def is_last_attempt(spec: QueueSpec, attempt: int) -> bool:
    """Whether a transient failure of this attempt would be dead-lettered, not retried."""
    return attempt >= spec.max_attempts


def decide(spec: QueueSpec, attempt: int, error: BaseException) -> Retry | DeadLetter:
    if isinstance(error, PermanentError):
        return DeadLetter(PERMANENT)
    if is_last_attempt(spec, attempt):
        return DeadLetter(EXHAUSTED)
    return Retry(delay=spec.delay_before_attempt(attempt + 1), next_attempt=attempt + 1)


def describe(error: BaseException) -> str:
    text = str(error) or error.__class__.__name__
    return text[:_MAX_ERROR_TEXT]


def retry_headers(headers: Headers, retry: Retry, error: BaseException, now: datetime) -> Headers:
    return {
        **headers,
        ATTEMPT: retry.next_attempt,
        FIRST_SEEN: _first_seen(headers, now),
        LAST_ERROR: f"{error.__class__.__name__}: {describe(error)}",
    }


def dead_letter_headers(
    headers: Headers,
    *,
    service: str,
    queue: str,
    attempt: int,
    error: BaseException,
    kind: str,
    now: datetime,
) -> Headers:
    details: dict[str, HeaderValue] = {
        ERROR_SERVICE: service,
        ERROR_QUEUE: queue,
        ERROR_TYPE: error.__class__.__name__,
        ERROR_MESSAGE: describe(error),
        ERROR_ATTEMPT: attempt,
        ERROR_KIND: kind,
        FIRST_SEEN: _first_seen(headers, now),
        DEAD_LETTERED_AT: now.isoformat(),
    }
    return {**headers, **details}


def _first_seen(headers: Headers, now: datetime) -> HeaderValue:
    return headers.get(FIRST_SEEN) or now.isoformat()

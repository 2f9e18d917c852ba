from datetime import UTC, datetime

import pytest

from shared.consumer import policy
from shared.errors import DomainRuleViolation, InvalidPayload, UndecodableMessage
from shared.topology import QueueSpec

SPEC = QueueSpec("q", "svc", ("k",), max_attempts=4, retry_delays=(2.0, 4.0, 8.0))


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, policy.Retry(delay=2.0, next_attempt=2)),
        (2, policy.Retry(delay=4.0, next_attempt=3)),
        (3, policy.Retry(delay=8.0, next_attempt=4)),
        (4, policy.DeadLetter("attempts-exhausted")),
    ],
)
def test_transient_errors_back_off_then_dead_letter(attempt: int, expected: object) -> None:
    assert policy.decide(SPEC, attempt, RuntimeError("x")) == expected
    # and a handler is told it has its last chance exactly when the policy would give up
    assert policy.is_last_attempt(SPEC, attempt) == isinstance(expected, policy.DeadLetter)


@pytest.mark.parametrize(
    "error", [UndecodableMessage("x"), InvalidPayload("x"), DomainRuleViolation("x")]
)
def test_permanent_errors_dead_letter_at_once(error: Exception) -> None:
    assert policy.decide(SPEC, 1, error) == policy.DeadLetter("permanent")


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [({}, 1), ({"x-attempt": 3}, 3), ({"x-attempt": "3"}, 1), ({"x-attempt": 0}, 1)],
)
def test_attempt_comes_from_our_own_header(headers: dict[str, object], attempt: int) -> None:
    assert policy.attempt_of(headers) == attempt  # type: ignore[arg-type]


def test_first_seen_is_kept_across_retries() -> None:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    once = policy.retry_headers({}, policy.Retry(2.0, 2), RuntimeError("a"), first)
    twice = policy.retry_headers(once, policy.Retry(4.0, 3), RuntimeError("b"), later)
    assert twice[policy.FIRST_SEEN] == first.isoformat()
    assert twice[policy.ATTEMPT] == 3
    assert twice[policy.LAST_ERROR] == "RuntimeError: b"


def test_error_text_is_bounded() -> None:
    assert len(policy.describe(RuntimeError("x" * 10_000))) == 500

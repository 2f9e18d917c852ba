"""Which dead letters a replay takes, what their copies carry, and how fast they go."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.api.admin.fingerprints import DeadLetter
from services.api.admin.replay import (
    REPLAYED_AT,
    REPLAYED_BY,
    Selector,
    pacing_delay,
    replay_headers,
)
from shared.consumer import policy


def letter(message_id: str, error_type: str) -> DeadLetter:
    headers = {policy.ERROR_TYPE: error_type, policy.ERROR_MESSAGE: "boom 42"}
    return DeadLetter(queue="q", message_id=message_id, headers=headers, body=b"{}")


LETTERS = [letter("a", "Bad"), letter("b", "Bad"), letter("c", "Worse")]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector(message_ids=frozenset({"a", "c", "zz"})), ["a", "c"]),
        (Selector(fingerprint=LETTERS[0].fingerprint), ["a", "b"]),
        (Selector(fingerprint="0000000000000000"), []),
        (Selector(all=True), ["a", "b", "c"]),
    ],
)
def test_selection(selector: Selector, expected: list[str]) -> None:
    assert [x.message_id for x in LETTERS if selector.matches(x)] == expected


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"all": True, "fingerprint": "f"},
        {"message_ids": frozenset({"a"}), "all": True},
        {"message_ids": frozenset()},
    ],
)
def test_exactly_one_non_empty_selector_is_required(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Selector(**arguments)  # type: ignore[arg-type]


def test_selector_is_recorded_like_the_request() -> None:
    assert Selector(message_ids=frozenset({"b", "a"})).describe() == {"messageIds": ["a", "b"]}
    assert Selector(fingerprint="f").describe() == {"fingerprint": "f"}
    assert Selector(all=True).describe() == {"all": True}


def test_replayed_copy_loses_its_failure_and_attempt_headers_and_says_who_replayed_it() -> None:
    # Given a dead letter's headers after three attempts
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    headers = policy.dead_letter_headers(
        {"x-schema-version": 1, policy.ATTEMPT: 3, policy.LAST_ERROR: "X: y"},
        service="verifier",
        queue="verifier.documents",
        attempt=3,
        error=RuntimeError("boom"),
        kind="attempts-exhausted",
        now=now,
    )
    headers = {**headers, "x-death": [{"count": 1}], "x-first-death-reason": "rejected"}

    # When it is replayed
    copied = replay_headers(headers, "admin@example.org", now)

    # Then only what describes the message itself stays, plus who replayed it and when
    assert copied == {
        "x-schema-version": 1,
        policy.FIRST_SEEN: now.isoformat(),
        REPLAYED_BY: "admin@example.org",
        REPLAYED_AT: now.isoformat(),
    }
    assert policy.attempt_of(copied) == 1


@pytest.mark.parametrize(
    ("sent", "rate", "elapsed", "expected"),
    [
        (0, 50.0, 0.0, 0.0),  # the first goes at once
        (10, 10.0, 0.5, 0.5),  # ten at 10/s are due after 1 s
        (10, 10.0, 2.0, 0.0),  # already late: no wait
        (3, 1.0, 1.0, 2.0),
    ],
)
def test_pacing_keeps_the_average_rate(
    sent: int, rate: float, elapsed: float, expected: float
) -> None:
    assert pacing_delay(sent, rate, elapsed) == pytest.approx(expected)

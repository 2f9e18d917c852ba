"""Failure fingerprints: variable parts of an error message must not split a group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.api.admin.fingerprints import (
    DeadLetter,
    fingerprint,
    group_dead_letters,
    normalise_error_message,
)
from shared.consumer import policy

SHA = "3fa9c0d1e2b3a4958677a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            f"blob {SHA} not found under /tmp/pytest-12/blobs",
            "blob <hex> not found under /tmp/pytest-<n>/blobs",
        ),
        (
            "application 6b1e1b8e-6f7e-4f55-9a55-0f0f1c0e0a01 is unknown",
            "application <uuid> is unknown",
        ),
        (
            "Expecting value: line 1 column 1 (char 0)",
            "Expecting value: line <n> column <n> (char <n>)",
        ),
        ("timed out after 2.5 s", "timed out after <n> s"),
        ("pointer 0x7f3a2b1c freed", "pointer <hex> freed"),
        ("object deadbeef42 vanished", "object <hex> vanished"),
        (f"blob {'ab' * 32} not found", "blob <hex> not found"),  # a digest without digits
        ("the request was accepted", "the request was accepted"),  # hex-looking words stay
        ("a facade of decaf coffee", "a facade of decaf coffee"),
        ("  spaces\n and\ttabs  ", "spaces and tabs"),
    ],
)
def test_variable_parts_become_placeholders(message: str, expected: str) -> None:
    assert normalise_error_message(message) == expected


def test_messages_differing_only_in_ids_share_a_fingerprint() -> None:
    first = normalise_error_message(f"blob {SHA} not found")
    second = normalise_error_message(f"blob {SHA[::-1]} not found")
    assert fingerprint("q", "BlobMissing", first) == fingerprint("q", "BlobMissing", second)


@pytest.mark.parametrize(
    ("queue", "error_type", "message"),
    [("other.queue", "BlobMissing", "m"), ("q", "OtherError", "m"), ("q", "BlobMissing", "x")],
)
def test_queue_type_and_message_each_tell_fingerprints_apart(
    queue: str, error_type: str, message: str
) -> None:
    assert fingerprint(queue, error_type, message) != fingerprint("q", "BlobMissing", "m")


def letter(message_id: str, error_type: str, message: str, at: datetime) -> DeadLetter:
    headers = {
        policy.ERROR_TYPE: error_type,
        policy.ERROR_MESSAGE: message,
        policy.DEAD_LETTERED_AT: at.isoformat(),
    }
    return DeadLetter(queue="verifier.documents", message_id=message_id, headers=headers, body=b"")


def test_grouping_counts_and_spans_each_failure_kind() -> None:
    # Given three missing blobs at different times and one undecodable message
    start = datetime(2026, 1, 1, tzinfo=UTC)
    letters = [
        letter("m1", "BlobMissing", f"blob {SHA} not found", start + timedelta(minutes=2)),
        letter("m2", "BlobMissing", f"blob {SHA[::-1]} not found", start),
        letter("m3", "UndecodableMessage", "not JSON at char 7", start + timedelta(minutes=1)),
        letter("m4", "BlobMissing", f"blob {SHA.upper()} not found", start + timedelta(minutes=5)),
    ]

    # When they are grouped
    groups = group_dead_letters(letters)

    # Then there are two groups, the larger first, with their time span and ids
    assert [(g.error_type, g.count) for g in groups] == [
        ("BlobMissing", 3),
        ("UndecodableMessage", 1),
    ]
    blobs = groups[0]
    assert blobs.first_seen == start
    assert blobs.last_seen == start + timedelta(minutes=5)
    assert sorted(blobs.message_ids) == ["m1", "m2", "m4"]
    assert blobs.message == "blob <hex> not found"
    assert blobs.sample.message_id == "m1"


def test_a_message_the_broker_dead_lettered_is_grouped_by_the_brokers_reason() -> None:
    broker_dead = DeadLetter(
        queue="q", message_id="m", headers={"x-first-death-reason": "delivery_limit"}, body=b""
    )
    nothing = DeadLetter(queue="q", message_id="n", headers={}, body=b"")
    assert broker_dead.error_type == "broker:delivery_limit"
    assert nothing.error_type == "unknown"
    assert nothing.dead_lettered_at is None

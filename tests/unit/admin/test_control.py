"""Control commands: parsing, and what a worker does with its consumers (pure parts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.control import (
    InvalidCommand,
    control_queue_name,
    control_queue_prefix,
    new_command,
    parse_command,
    queues_to_start,
    transition,
)

AT = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


def body(**fields: object) -> bytes:
    command = {
        "action": "pause",
        "queue": "mailer.medium",
        "requested_by": "ops@x",
        "at": AT.isoformat(),
    }
    command.update(fields)
    return json.dumps({k: v for k, v in command.items() if v is not None}).encode()


def test_a_command_survives_the_wire() -> None:
    sent = new_command("resume", "mailer.medium", "admin@example.org", AT)
    received = parse_command(sent.encode(), sent.message_id)
    assert received == sent
    assert not received.paused
    assert parse_command(body()).paused


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (body(action="stop"), "action"),
        (body(action=None), "action"),
        (body(queue=""), "queue"),
        (body(queue=7), "queue"),
        (body(requested_by=None), "requested_by"),
        (body(at="yesterday"), "ISO 8601"),
        (body(at="2026-05-01T08:30:00"), "timezone"),
        (body(queue="q" * 201), "queue"),
    ],
)
def test_invalid_commands_say_what_is_wrong(raw: bytes, complaint: str) -> None:
    with pytest.raises(InvalidCommand, match=complaint):
        parse_command(raw)


def test_a_command_time_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError):
        new_command("pause", "q", "me", datetime(2026, 1, 1))


def test_paused_queues_are_not_started_at_start_up() -> None:
    owned = ["mailer.critical", "mailer.medium", "mailer.low"]
    assert queues_to_start(owned, {"mailer.medium", "verifier.documents"}) == [
        "mailer.critical",
        "mailer.low",
    ]
    assert queues_to_start(owned, set()) == owned


@pytest.mark.parametrize(
    ("paused", "consuming", "expected"),
    [(True, True, "stop"), (True, False, None), (False, False, "start"), (False, True, None)],
)
def test_transition_only_changes_what_differs(
    paused: bool, consuming: bool, expected: str | None
) -> None:
    assert transition(paused, consuming) == expected


def test_control_queues_of_a_service_share_a_prefix() -> None:
    name = control_queue_name("mailer", "abc")
    assert name == "control.mailer.abc"
    assert name.startswith(control_queue_prefix("mailer"))
    assert not control_queue_name("mailer2", "x").startswith(control_queue_prefix("mailer"))

"""Addresses in events: checked in full where an event is built, by shape where it is read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import InvalidPayload
from shared.events.catalog import ReportRequested, parse_payload


def test_an_event_is_built_only_with_a_valid_address_normalised() -> None:
    assert (
        ReportRequested(report_id="r", kind="applications", recipient="Ada@Example.ORG").recipient
        == "Ada@example.org"
    )
    with pytest.raises(ValidationError):
        ReportRequested(
            report_id="r", kind="applications", recipient="ada@localhost"
        )  # no real domain: the edge refuses


@pytest.mark.parametrize("published", [False, True])
def test_a_valid_address_is_read_back_unchanged(published: bool) -> None:
    payload = parse_payload(
        "report.requested",
        2,
        {"report_id": "r", "kind": "applications", "recipient": "ada@example.org"},
        published=published,
    )
    assert payload == ReportRequested(
        report_id="r", kind="applications", recipient="ada@example.org"
    )


@pytest.mark.parametrize(
    "address",
    ["no-at-sign", "a@b@c", "ada@example.org\r\nBcc: everyone@example.org", "ada @example.org", ""],
)
def test_a_published_event_with_a_malformed_address_is_an_invalid_payload(address: str) -> None:
    # A consumer does not run the full check again, but nothing header-breaking gets through
    with pytest.raises(InvalidPayload, match="recipient"):
        parse_payload(
            "report.requested",
            2,
            {"report_id": "r", "kind": "applications", "recipient": address},
            published=True,
        )

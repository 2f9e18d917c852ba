"""Addresses in events: checked in full where an event is built, by shape where it is read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.errors import InvalidPayload
from shared.events.catalog import OtpRequested, parse_payload


def test_an_event_is_built_only_with_a_valid_address_normalised() -> None:
    assert OtpRequested(email="Ada@Example.ORG", code="123456").email == "Ada@example.org"
    with pytest.raises(ValidationError):
        OtpRequested(email="ada@localhost", code="123456")  # no real domain: the edge refuses


@pytest.mark.parametrize("published", [False, True])
def test_a_valid_address_is_read_back_unchanged(published: bool) -> None:
    payload = parse_payload(
        "auth.otp_requested", 1, {"email": "ada@example.org", "code": "123456"}, published=published
    )
    assert payload == OtpRequested(email="ada@example.org", code="123456")


@pytest.mark.parametrize(
    "address",
    ["no-at-sign", "a@b@c", "ada@example.org\r\nBcc: everyone@example.org", "ada @example.org", ""],
)
def test_a_published_event_with_a_malformed_address_is_an_invalid_payload(address: str) -> None:
    # A consumer does not run the full check again, but nothing header-breaking gets through
    with pytest.raises(InvalidPayload, match="email"):
        parse_payload("auth.otp_requested", 1, {"email": address, "code": "123456"}, published=True)

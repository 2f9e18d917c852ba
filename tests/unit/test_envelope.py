import uuid

import pytest

from shared.errors import InvalidPayload, UndecodableMessage, UnknownEventType
from shared.events.catalog import CATALOG, PaymentFailed, parse_payload, payload_model
from shared.events.envelope import decode_envelope, new_envelope


def test_an_envelope_survives_the_wire() -> None:
    envelope = new_envelope(
        PaymentFailed(reason="declined", application_id="a1", applicant_email="a@example.org"),
        correlation_id="req-1",
    )
    decoded = decode_envelope(envelope.encode())
    assert decoded == envelope
    assert decoded.type == "payment.failed"
    assert parse_payload(decoded.type, decoded.version, decoded.payload) == PaymentFailed(
        reason="declined", application_id="a1", applicant_email="a@example.org"
    )


def test_caused_events_keep_the_correlation() -> None:
    cause = new_envelope(
        PaymentFailed(reason="declined", application_id="a1", applicant_email="a@example.org")
    )
    effect = new_envelope(
        PaymentFailed(reason="declined", application_id="a1", applicant_email="a@example.org"),
        correlation_id=cause.correlation_id,
        causation_id=str(cause.message_id),
    )
    assert cause.correlation_id == str(cause.message_id)
    assert effect.correlation_id == cause.correlation_id


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"type": "x"}', "é".encode("latin-1")])
def test_garbage_is_undecodable(body: bytes) -> None:
    with pytest.raises(UndecodableMessage):
        decode_envelope(body)


def test_unknown_types_and_versions_and_payloads_are_refused() -> None:
    with pytest.raises(UnknownEventType):
        payload_model("nope")
    with pytest.raises(InvalidPayload, match="version 2"):
        parse_payload("payment.failed", 2, {"application_id": "a"})
    with pytest.raises(InvalidPayload, match="application_id"):
        parse_payload("payment.failed", 1, {})


def test_the_catalog_names_each_type_once() -> None:
    assert all(model.event_type == name for name, model in CATALOG.items())
    assert len({m.event_type for m in CATALOG.values()}) == len(CATALOG)
    assert uuid.UUID(
        str(
            new_envelope(
                PaymentFailed(
                    reason="declined", application_id="a", applicant_email="a@example.org"
                )
            ).message_id
        )
    )

"""Bytes on the wire to a validated event, once per delivery."""

from __future__ import annotations

from dataclasses import dataclass

from shared.broker.base import BrokerMessage, Delivery
from shared.errors import UndecodableMessage
from shared.events.catalog import EventPayload, parse_payload
from shared.events.envelope import CONTENT_TYPE, Envelope, decode_envelope
from shared.events.signing import EventVerifier

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024


@dataclass
class Received:
    """One delivery on its way through the runtime: decoded once, settled once."""

    delivery: Delivery
    attempt: int
    started: float
    envelope: Envelope | None = None
    payload: EventPayload | None = None
    error: Exception | None = None  # why it did not decode

    @property
    def message(self) -> BrokerMessage:
        return self.delivery.message


def decode(
    message: BrokerMessage, max_bytes: int, authenticity: EventVerifier
) -> tuple[Envelope, EventPayload]:
    """Bytes on the wire to a validated event signed by its type's owner, or a
    ``PermanentError`` saying why not."""
    if len(message.body) > max_bytes:
        raise UndecodableMessage(f"body of {len(message.body)} bytes exceeds {max_bytes}")
    if message.content_type != CONTENT_TYPE:
        raise UndecodableMessage(
            f"content type {message.content_type!r}, expected {CONTENT_TYPE!r}"
        )
    if not message.message_id:
        raise UndecodableMessage("the message has no message_id property")
    envelope = decode_envelope(message.body)
    if str(envelope.message_id) != message.message_id:
        raise UndecodableMessage(
            f"message_id property {message.message_id!r} differs from the envelope's"
        )
    authenticity.verify(envelope.type, message.body, message.headers)
    return envelope, parse_payload(
        envelope.type, envelope.version, envelope.payload, published=True
    )

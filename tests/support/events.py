"""Events as the relay publishes them: signed with the development key of the type's owner
(``shared.events.signing``), so the consumer runtime accepts them."""

from __future__ import annotations

from shared.broker.base import Headers, OutgoingMessage
from shared.events.catalog import publisher_of
from shared.events.envelope import Envelope
from shared.events.signing import EventVerifier, signed_by_development_key

DEVELOPMENT_VERIFIER = EventVerifier.development()


def signed(envelope: Envelope, headers: Headers | None = None) -> OutgoingMessage:
    message = OutgoingMessage.from_envelope(envelope, headers)
    return signed_by_development_key(message, publisher_of(envelope.type))


sign = signed_by_development_key

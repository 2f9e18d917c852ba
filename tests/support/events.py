"""Events as the relay publishes them: signed with the development key of the type's owner
(``shared.events.signing``), so the consumer runtime accepts them."""

from __future__ import annotations

from shared.broker.base import BrokerMessage, Headers
from shared.events.catalog import OtpRequested, PasswordResetRequested, publisher_of
from shared.events.envelope import Envelope
from shared.events.sealed import SecretSealer, seal_context
from shared.events.signing import EventVerifier, signed_by_development_key

DEVELOPMENT_VERIFIER = EventVerifier.development()


def signed(envelope: Envelope, headers: Headers | None = None) -> BrokerMessage:
    message = BrokerMessage.from_envelope(envelope, headers)
    return signed_by_development_key(message, publisher_of(envelope.type))


sign = signed_by_development_key


# Secrets sealed as the API seals them, with the development key the mailer opens them with.
DEVELOPMENT_SEALER = SecretSealer.development()


def otp_requested(email: str, code: str) -> OtpRequested:
    context = seal_context(OtpRequested.event_type, email)
    return OtpRequested(email=email, sealed_code=DEVELOPMENT_SEALER.seal(code, context))


def reset_requested(email: str, token: str) -> PasswordResetRequested:
    context = seal_context(PasswordResetRequested.event_type, email)
    return PasswordResetRequested(email=email, sealed_token=DEVELOPMENT_SEALER.seal(token, context))

"""Signed events: an event is accepted only when signed by the service that owns its type.

The broker's topic permissions keep each service's login from routing messages into another
service's queues, but two logins must reach every queue: the relay, which publishes every
service's outbox to ``admissions.events``, and the api, whose dead-letter replay sends messages
back into any work queue. Signatures make those logins unable to forge an event too:

- the relay signs each outbox row with the key of the service whose outbox it came from
  (Ed25519 over the body's exact bytes), in the headers ``x-signed-by`` and ``x-signature``;
- a consumer verifies, before any handler runs, that the signer is the service that owns the
  event type (``published_by`` in the catalog) and that the signature matches, with that
  service's *public* key: consumers hold no key that signs, so none of them can forge either.
  A message that fails is dead-lettered with the reason (``ForgedEvent``, a permanent error).

Retries, dead letters and replays copy the body and the headers, so the signature travels with
the message through every hop. Keys are 32-byte Ed25519 seeds and public keys, base64-encoded,
given as ``service=key,service=key`` (``EVENT_SIGNING_KEYS`` to the relay,
``EVENT_PUBLIC_KEYS`` to consumers); ``python -m shared.events.signing`` prints a fresh pair of
lines. Left empty, development keys derived from each service's name are used, which anyone
can derive: ``APP_ENV=production`` refuses them.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.broker.base import BrokerMessage
from shared.errors import ForgedEvent
from shared.events.catalog import CATALOG, publisher_of

SIGNED_BY_HEADER = "x-signed-by"
SIGNATURE_HEADER = "x-signature"
# The services that publish events (every type's ``published_by``).
PUBLISHERS: tuple[str, ...] = tuple(sorted({model.published_by for model in CATALOG.values()}))


def development_key(service: str) -> Ed25519PrivateKey:
    """A key anyone can derive from the service's name: for development and tests only."""
    seed = hashlib.sha256(f"admissions-dev-event-key:{service}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class EventSigner:
    """Signs one service's events (the relay holds one per outbox it publishes)."""

    def __init__(self, service: str, key: Ed25519PrivateKey) -> None:
        self.service = service
        self._key = key

    @classmethod
    def development(cls, service: str) -> EventSigner:
        return cls(service, development_key(service))

    def headers(self, body: bytes) -> dict[str, str]:
        signature = base64.b64encode(self._key.sign(body)).decode("ascii")
        return {SIGNED_BY_HEADER: self.service, SIGNATURE_HEADER: signature}


class EventVerifier:
    """Checks that an event is signed by the owner of its type."""

    def __init__(self, public_keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(public_keys)

    @classmethod
    def development(cls, services: Iterable[str] = PUBLISHERS) -> EventVerifier:
        return cls({s: development_key(s).public_key() for s in services})

    def verify(self, event_type: str, body: bytes, headers: Mapping[str, object]) -> None:
        """Return when ``body`` is signed by the owner of ``event_type``; else ``ForgedEvent``."""
        owner = publisher_of(event_type)
        signer = headers.get(SIGNED_BY_HEADER)
        if signer != owner:
            raise ForgedEvent(
                f"{event_type} must be signed by {owner}, signed by {signer or 'nobody'}"
            )
        key = self._keys.get(owner)
        if key is None:
            raise ForgedEvent(f"no public key for {owner}: cannot verify {event_type}")
        try:
            signature = base64.b64decode(str(headers.get(SIGNATURE_HEADER) or ""), validate=True)
            key.verify(signature, body)
        except (InvalidSignature, ValueError):
            raise ForgedEvent(f"{event_type}: the signature of {owner} does not match") from None


def signed_by_development_key(message: BrokerMessage, publisher: str) -> BrokerMessage:
    """``message`` as the relay of a development system publishes ``publisher``'s events:
    for tests and benchmarks that feed consumers directly."""
    return message.with_headers(EventSigner.development(publisher).headers(message.body))


# --- configuration ---------------------------------------------------------------------------


def _parse(text: str, what: str) -> dict[str, bytes]:
    """``service=base64,service=base64`` to raw 32-byte keys."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, sep, encoded = item.partition("=")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raw = b""
        if not sep or len(raw) != 32:
            raise ValueError(f"{what}: expected service=<base64 of 32 bytes>, got {service!r}")
        keys[service.strip()] = raw
    return keys


def signers_from(text: str, services: Iterable[str]) -> dict[str, EventSigner]:
    """The relay's signers (``EVENT_SIGNING_KEYS``; development keys when empty).

    A source that owns no event type needs no key: it signs with a throwaway one, so a row it
    ever publishes is dead-lettered downstream as forged, visibly, instead of waiting in its
    outbox for ever."""
    wanted = list(services)
    if not text:
        return {service: EventSigner.development(service) for service in wanted}
    seeds = _parse(text, "EVENT_SIGNING_KEYS")
    missing = [s for s in wanted if s not in seeds and s in PUBLISHERS]
    if missing:
        raise ValueError(f"EVENT_SIGNING_KEYS has no key for {', '.join(missing)}")
    return {
        s: EventSigner(
            s,
            Ed25519PrivateKey.from_private_bytes(seeds[s])
            if s in seeds
            else Ed25519PrivateKey.generate(),
        )
        for s in wanted
    }


def verifier_from(text: str) -> EventVerifier:
    """A consumer's verifier (``EVENT_PUBLIC_KEYS``; development keys when empty)."""
    if not text:
        return EventVerifier.development()
    raw = _parse(text, "EVENT_PUBLIC_KEYS")
    missing = [s for s in PUBLISHERS if s not in raw]
    if missing:
        raise ValueError(f"EVENT_PUBLIC_KEYS has no key for {', '.join(missing)}")
    return EventVerifier({s: Ed25519PublicKey.from_public_bytes(raw[s]) for s in raw})


def generate() -> tuple[str, str]:
    """Fresh keys for every publisher: (``EVENT_SIGNING_KEYS``, ``EVENT_PUBLIC_KEYS``)."""
    keys = {service: Ed25519PrivateKey.generate() for service in PUBLISHERS}
    private = ",".join(
        f"{s}={base64.b64encode(k.private_bytes_raw()).decode()}" for s, k in keys.items()
    )
    public = ",".join(
        f"{s}={base64.b64encode(public_bytes(k.public_key())).decode()}" for s, k in keys.items()
    )
    return private, public


def main() -> None:
    private, public = generate()
    sys.stdout.write(f"EVENT_SIGNING_KEYS={private}\nEVENT_PUBLIC_KEYS={public}\n")


if __name__ == "__main__":
    main()

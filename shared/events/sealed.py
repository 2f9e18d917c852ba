"""Secrets inside events, sealed for the one service that must read them.

A password-reset token or a one-time code travels from the API to the mailer in an event, and
an event is kept in places many can read: the outbox (7 days, readable by the relay and the
operators' role), the broker, dead-letter queues and the admin API's dead-letter viewer. So the
API seals the secret with a key only it and the mailer hold (AES-256-GCM, ``MAIL_SEAL_KEY``),
and the mailer opens it to write the mail. The sealed text is bound to its event type and
recipient (authenticated data): moved into another event, it does not open.

``MAIL_SEAL_KEY`` is 32 random bytes, base64 (``python -m shared.events.sealed`` prints one).
Left empty, a development key derived from a fixed string is used, which anyone can derive:
``APP_ENV=production`` refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "gcm1."
SEALED_PATTERN = r"^gcm1\.[A-Za-z0-9_-]+={0,2}$"
_NONCE_BYTES = 12


class SealBroken(Exception):
    """The sealed text is malformed, altered, bound to another event, or sealed with another
    key."""


class SecretSealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("MAIL_SEAL_KEY: expected 32 bytes, base64-encoded")
        self._aead = AESGCM(key)

    @staticmethod
    def development_key() -> bytes:
        return hashlib.sha256(b"admissions-dev-mail-seal-key").digest()

    @classmethod
    def development(cls) -> SecretSealer:
        return cls(cls.development_key())

    @classmethod
    def from_setting(cls, text: str) -> SecretSealer:
        if not text:
            return cls.development()
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise ValueError("MAIL_SEAL_KEY: expected 32 bytes, base64-encoded") from None
        return cls(key)

    def seal(self, secret: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, sealed: str, context: str) -> str:
        if not sealed.startswith(PREFIX):
            raise SealBroken("not a sealed secret")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
            opened = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (ValueError, InvalidTag):
            raise SealBroken(
                "the sealed secret does not open (altered, moved, or another MAIL_SEAL_KEY)"
            ) from None
        return opened.decode()


def seal_context(event_type: str, recipient: str) -> str:
    return f"{event_type}\n{recipient}"


def main() -> None:
    sys.stdout.write(f"MAIL_SEAL_KEY={base64.b64encode(os.urandom(32)).decode()}\n")


if __name__ == "__main__":
    main()

"""Signed unsubscribe links for announcements.

The mailer puts a link in every announcement; the API honours it without a login (an applicant
reading a mail is rarely signed in), so the link carries a MAC of the address: only the holder
of the key can make one, and a link made for one address does not work for another. The key is
derived from ``MAIL_SEAL_KEY``, which the API and the mailer already share (and nobody else
holds), under a label of its own, so a MAC can never be mistaken for anything the seal makes.
Links do not expire: an unsubscribe link must work whenever the mail is read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

from shared.events.sealed import SecretSealer

_LABEL = b"admissions/announcement-unsubscribe/v1"


class UnsubscribeSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_seal_setting(cls, mail_seal_key: str) -> UnsubscribeSigner:
        """From ``MAIL_SEAL_KEY`` (empty: the development key, as the seal's)."""
        if mail_seal_key:
            seal_key = base64.b64decode(mail_seal_key, validate=True)
        else:
            seal_key = SecretSealer.development_key()
        return cls(hmac.new(seal_key, _LABEL, hashlib.sha256).digest())

    def token(self, email: str) -> str:
        mac = hmac.new(self._key, email.strip().lower().encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def verify(self, email: str, token: str) -> bool:
        return hmac.compare_digest(self.token(email), token)

    def url(self, api_public_url: str, email: str) -> str:
        query = urlencode({"email": email, "token": self.token(email)})
        return f"{api_public_url.rstrip('/')}/announcements/unsubscribe?{query}"

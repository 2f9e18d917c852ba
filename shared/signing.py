"""Signed webhooks: ``Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``"<t>." + body``, so a captured body cannot be replayed with a fresh
timestamp, and an old timestamp is refused. The payment sandbox signs with it; the API checks.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "Webhook-Signature"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The header is missing, malformed, stale, or its MAC does not match."""


def compute_mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={compute_mac(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Return the signed timestamp, or raise ``InvalidSignature`` saying what is wrong."""
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    # Shapes checked before any arithmetic or comparison: a timestamp of hundreds of digits
    # overflows a float, and a non-ASCII MAC makes hmac.compare_digest raise.
    stamp, mac = fields.get("t", ""), fields.get("v1", "")
    if not _TIMESTAMP.fullmatch(stamp) or not _HEX_MAC.fullmatch(mac):
        raise InvalidSignature("malformed signature header: expected t=<seconds>,v1=<hex>")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(f"timestamp outside the {tolerance} s tolerance")
    if not hmac.compare_digest(mac, compute_mac(secret, timestamp, body)):
        raise InvalidSignature("signature does not match")
    return timestamp

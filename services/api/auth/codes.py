"""Secrets mailed to people (reset tokens, one-time codes) and the hashes kept of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_reset_token() -> str:
    return secrets.token_urlsafe(32)


def hash_reset_token(token: str) -> str:
    """A plain SHA-256 suffices: the token has 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_otp_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def hash_otp_code(key: str, user_id: str, code: str) -> str:
    """Keyed, because a million candidates are quickly tried against a plain hash."""
    return hmac.new(key.encode(), f"{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def otp_matches(stored_hash: str, candidate_hash: str) -> bool:
    """In constant time: how much of a guess is right must not show in how long it takes."""
    return hmac.compare_digest(stored_hash, candidate_hash)

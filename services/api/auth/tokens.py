"""Access tokens: HS256 JWTs naming the user, their address and role. Pure functions.

The address travels in the token so the hot path (a submission) needs no lookup of the user.
So does the user's token version (``ver``): a password reset moves the version on, and a
token of an older one is refused where the user's row is read (``dependencies.py``, and the
submission's own statement), which revokes every token issued before the reset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

ALGORITHM = "HS256"
Role = Literal["applicant", "admin"]


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: Role
    token_version: int = 0  # users.token_version when the token was issued

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue_token(principal: Principal, secret: str, ttl: timedelta, now: datetime) -> str:
    claims = {
        "sub": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "ver": principal.token_version,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class VerifiedToken:
    principal: Principal
    expires_at: int


def read_token(token: str, secret: str) -> VerifiedToken:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "role"]}
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
    role = claims.get("role")
    if role not in ("applicant", "admin") or not isinstance(claims.get("email"), str):
        raise InvalidToken("the token does not name a role and an address")
    version = claims.get("ver", 0)  # tokens issued before versions existed: version 0
    if type(version) is not int:
        raise InvalidToken("the token's version is not a number")
    principal = Principal(str(claims["sub"]), claims["email"], role, version)
    return VerifiedToken(principal, int(claims["exp"]))


class TokenVerifier:
    """Verifies tokens and remembers the ones it verified until they expire.

    A client sends the same token with every request; checking its signature again each time
    was a tenth of a submission's CPU. A token is only remembered after a full verification,
    so a forged one never enters; entries leave when they expire or the oldest are dropped."""

    def __init__(
        self, secret: str, capacity: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self._capacity = capacity
        self._clock = clock
        self._verified: dict[str, VerifiedToken] = {}

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is None:
            known = read_token(token, self._secret)
            if len(self._verified) >= self._capacity:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = known
        if self._clock() >= known.expires_at:
            del self._verified[token]
            raise InvalidToken("the token has expired")
        return known.principal

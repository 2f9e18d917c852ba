"""Access tokens: HS256 JWTs naming the user, their address and role. Pure functions.

The address travels in the token so the hot path (a submission) needs no lookup of the user.
"""

from __future__ import annotations

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

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue_token(principal: Principal, secret: str, ttl: timedelta, now: datetime) -> str:
    claims = {
        "sub": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "role"]}
        )
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
    role = claims.get("role")
    if role not in ("applicant", "admin") or not isinstance(claims.get("email"), str):
        raise InvalidToken("the token does not name a role and an address")
    return Principal(user_id=str(claims["sub"]), email=claims["email"], role=role)

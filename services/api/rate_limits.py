"""Limits on what a flood would abuse: 429 with ``Retry-After``, counted in Postgres.

Each limit allows ``max_hits`` requests per subject in a fixed window that starts with the
subject's first request. The count is one upsert that returns the new count (concurrent
requests are serialised on the row, so N requests at once count N), in Postgres so that every
API replica shares it. A refused request still counts: hammering does not shorten the wait.

What is limited, and per what:
- registrations, per client address (each costs an Argon2 hash: 64 MiB, tens of ms);
- login attempts, per client address, whatever the e-mail (random e-mails cost a hash each;
  wrong passwords for one account are also throttled per (address, e-mail): ``auth.throttle``);
- password resets, per e-mail (each is a critical-lane mail to that person) and per address;
- one-time codes, per user, asked for and tried (six digits are few: with ``OTP_MAX_ATTEMPTS``
  per code, this bounds the guesses an hour);
- submissions, per applicant (in ``accept_submission``, after authentication and before the
  body is read, so both doors to it count each submission once).

``RATE_LIMITS=0`` turns them off, for load generators that send everything from one address as
one applicant (the end-to-end system, chaos runs and benchmarks). A limit of 0 is no limit.
Expired rows are deleted now and then by the requests themselves (about one in a hundred).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from psycopg import AsyncConnection

from services.api.auth.dependencies import CurrentUser
from services.api.auth.tokens import Principal
from services.api.resources import Resources, resources
from services.api.settings import ApiSettings

_HIT = """
INSERT INTO rate_limits AS r (key, hits, window_ends) VALUES (%(key)s, 1, now() + %(window)s)
ON CONFLICT (key) DO UPDATE SET
    hits = CASE WHEN r.window_ends <= now() THEN 1 ELSE r.hits + 1 END,
    window_ends = CASE WHEN r.window_ends <= now() THEN now() + %(window)s ELSE r.window_ends END
RETURNING hits, extract(epoch FROM window_ends - now())
"""
_FORGET_EXPIRED = "DELETE FROM rate_limits WHERE window_ends < now()"
CLEANUP_PROBABILITY = 0.01


@dataclass(frozen=True)
class Limit:
    name: str  # what is counted, in the 429's words: "registrations from this address"
    max_hits: int
    window: timedelta


@dataclass(frozen=True)
class Limits:
    registration: Limit
    login: Limit
    reset_per_email: Limit
    reset_per_address: Limit
    otp: Limit
    otp_verification: Limit
    submission: Limit

    @classmethod
    def from_settings(cls, s: ApiSettings) -> Limits:
        hour, minute = timedelta(hours=1), timedelta(minutes=1)
        return cls(
            Limit("registrations from this address", s.registrations_per_address_per_hour, hour),
            Limit("login attempts from this address", s.logins_per_address_per_minute, minute),
            Limit("password resets for this address", s.password_resets_per_email_per_hour, hour),
            Limit(
                "password resets from this address", s.password_resets_per_address_per_hour, hour
            ),
            Limit("one-time codes", s.otp_requests_per_user_per_hour, hour),
            Limit("one-time code tries", s.otp_verifications_per_user_per_hour, hour),
            Limit("submissions", s.submissions_per_applicant_per_hour, hour),
        )


def limit_key(limit: Limit, subject: str) -> str:
    return hashlib.sha256(f"{limit.name}\n{subject}".encode("utf-8", "replace")).hexdigest()


async def count_hit(conn: AsyncConnection[Any], limit: Limit, subject: str) -> float | None:
    """Count one request; return the seconds until the window ends when it is over the limit,
    or None when it may go on."""
    cursor = await conn.execute(_HIT, {"key": limit_key(limit, subject), "window": limit.window})
    row = await cursor.fetchone()
    assert row is not None
    if random.random() < CLEANUP_PROBABILITY:
        await conn.execute(_FORGET_EXPIRED)
    hits, remaining = int(row[0]), float(row[1])
    return remaining if hits > limit.max_hits else None


async def enforce(deps: Resources, limit: Limit, subject: str) -> None:
    """Count the request; 429 with ``Retry-After`` when the subject is over the limit."""
    if not deps.settings.rate_limits or limit.max_hits <= 0:
        return
    async with deps.connection() as conn:
        wait = await count_hit(conn, limit, subject)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many {limit.name}; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


def client_address(request: Request) -> str:
    """As uvicorn reports it (behind a proxy: the forwarded address it trusts)."""
    return request.client.host if request.client else "unknown"


def limits(deps: Resources) -> Limits:
    return Limits.from_settings(deps.settings)


Deps = Annotated[Resources, Depends(resources)]


async def limit_registrations(request: Request, deps: Deps) -> None:
    await enforce(deps, limits(deps).registration, client_address(request))


async def limit_logins(request: Request, deps: Deps) -> None:
    await enforce(deps, limits(deps).login, client_address(request))


async def limit_password_resets(request: Request, deps: Deps, email: str) -> None:
    await enforce(deps, limits(deps).reset_per_address, client_address(request))
    await enforce(deps, limits(deps).reset_per_email, email)


async def limit_otp_requests(user: CurrentUser, deps: Deps) -> None:
    await enforce(deps, limits(deps).otp, user.user_id)


async def limit_otp_verifications(user: CurrentUser, deps: Deps) -> None:
    await enforce(deps, limits(deps).otp_verification, user.user_id)


async def limit_submissions(deps: Resources, user: Principal) -> None:
    """Called by the accept path itself (``accept_submission``), not as a route dependency:
    its fast path (``SubmissionFastPath``) bypasses FastAPI's dependencies."""
    await enforce(deps, limits(deps).submission, user.user_id)

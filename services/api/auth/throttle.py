"""Slowing down password guessing on ``/auth/token``: failures per (client address, e-mail).

After ``max_failures`` wrong passwords for one pair within ``window`` (counted from the first
of them), every attempt of that pair answers 429 with ``Retry-After`` until the window ends,
without the password being checked. Keyed by the pair on purpose: an attacker guessing from
one address does not lock the account's owner out (another address), and guessing against one
account does not slow down other people logging in from the same address (a campus NAT).
A successful login clears its pair.

The client address is the one uvicorn reports. Behind a proxy (nginx in compose) uvicorn
must trust the proxy's X-Forwarded-For (``FORWARDED_ALLOW_IPS``, read by uvicorn itself);
otherwise every client shares the proxy's address and an attacker could block an account's
owner too.

The counts live in Postgres (``login_failures``) so every API replica shares them. The check
and the count are two statements, so concurrent guesses may each get through before the
count catches up: the limit holds to within the number of requests in flight.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: timedelta


def throttle_key(client_address: str, email: str) -> str:
    """The pair, hashed: bounded in length, no NUL byte can reach the database, nothing in
    clear in the table."""
    return hashlib.sha256(f"{client_address}\n{email}".encode("utf-8", "replace")).hexdigest()


def retry_after_seconds(remaining: float) -> int:
    """Whole seconds for ``Retry-After``, never 0 (a client would retry at once)."""
    return max(1, math.ceil(remaining))


async def blocked_for(conn: AsyncConnection[Any], key: str, policy: ThrottlePolicy) -> float | None:
    """Seconds until the pair may try again, or None when it may try now."""
    cursor = await conn.execute(
        "SELECT extract(epoch FROM window_started + %s - now()) FROM login_failures"
        " WHERE key = %s AND failures >= %s AND window_started + %s > now()",
        (policy.window, key, policy.max_failures, policy.window),
    )
    row = await cursor.fetchone()
    return None if row is None else float(row[0])


async def record_failure(conn: AsyncConnection[Any], key: str, policy: ThrottlePolicy) -> None:
    """Count one failure; an expired window starts again at 1. Expired pairs are removed on
    the way, so the table only holds pairs that failed within the last window."""
    await conn.execute(
        "INSERT INTO login_failures AS f (key, failures, window_started) VALUES (%s, 1, now())"
        " ON CONFLICT (key) DO UPDATE SET"
        "  failures = CASE WHEN f.window_started + %s <= now() THEN 1 ELSE f.failures + 1 END,"
        "  window_started = CASE WHEN f.window_started + %s <= now()"
        "                        THEN now() ELSE f.window_started END",
        (key, policy.window, policy.window),
    )
    await conn.execute(
        "DELETE FROM login_failures WHERE window_started < now() - %s", (policy.window,)
    )


async def clear(conn: AsyncConnection[Any], key: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE key = %s", (key,))

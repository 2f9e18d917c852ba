"""Slowing down password guessing on ``/auth/token``: failures per (client address, e-mail).

After ``max_failures`` wrong passwords for one pair within ``window`` (counted from the first
of them), every attempt of that pair answers 429 with ``Retry-After`` until the window ends,
without the password being checked. Keyed by the pair on purpose: an attacker guessing from
one address does not lock the account's owner out (another address), and guessing against one
account does not slow down other people logging in from the same address (a campus NAT).
A successful login clears its pair.

The client address is the one uvicorn reports. Behind a proxy (nginx in compose) uvicorn
must trust the proxy's X-Forwarded-For: ``FORWARDED_ALLOW_IPS`` (``ApiSettings``) lists the
proxies' addresses; otherwise every client shares the proxy's address and an attacker could
block an account's owner too.

The counts live in Postgres (``login_failures``) so every API replica shares them. Each
attempt is counted *before* its password is checked, as a failure until the password proves
right, in the one statement that also says whether the pair is over the limit: concurrent
guesses are counted one by one, so no more than ``max_failures`` of them are ever checked.
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


async def reserve_attempt(
    conn: AsyncConnection[Any], key: str, policy: ThrottlePolicy
) -> float | None:
    """Count this attempt as a failure (``clear`` forgets it when the password is right);
    return the seconds until the pair may try again when it is over the limit, else None.
    An expired window starts again at 1."""
    cursor = await conn.execute(
        "INSERT INTO login_failures AS f (key, failures, window_started) VALUES (%s, 1, now())"
        " ON CONFLICT (key) DO UPDATE SET"
        "  failures = CASE WHEN f.window_started + %s <= now() THEN 1 ELSE f.failures + 1 END,"
        "  window_started = CASE WHEN f.window_started + %s <= now()"
        "                        THEN now() ELSE f.window_started END"
        " RETURNING failures, extract(epoch FROM window_started + %s - now())",
        (key, policy.window, policy.window, policy.window),
    )
    row = await cursor.fetchone()
    assert row is not None
    failures, remaining = int(row[0]), float(row[1])
    return remaining if failures > policy.max_failures else None


async def forget_expired(conn: AsyncConnection[Any], policy: ThrottlePolicy) -> None:
    """The table only holds pairs that failed within the last window."""
    await conn.execute(
        "DELETE FROM login_failures WHERE window_started < now() - %s", (policy.window,)
    )


async def clear(conn: AsyncConnection[Any], key: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE key = %s", (key,))

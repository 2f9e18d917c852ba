"""Announcements during a chaos run: the administrator publishes a few while the faults land,
each to the same seeded audience (a program only the seeded applicants applied to), and the
audit checks that every recipient got each announcement exactly once.

The publishing client retries a failed POST as an administrator would (the API may be down),
and a POST whose answer was lost may still have created its announcement: so each attempt
has a subject of its own, and the audit judges every announcement the database holds, not
only the ones the client heard of.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import httpx
import psycopg

from devtools.chaos.audit import Announced
from devtools.seeding import seed_applicants
from devtools.system import RunningSystem

PROGRAM = "Chaos Announcement Studies"
# How long the administrator keeps trying to publish one announcement.
PUBLISH_PATIENCE_SECONDS = 300.0


class Announcements:
    def __init__(
        self, system: RunningSystem, *, rng: random.Random, count: int, recipients: int
    ) -> None:
        self.system = system
        self.rng = rng
        self.count = count
        self.recipient_count = recipients
        self.prefix = f"chaos announcement {uuid.uuid4().hex[:8]}"
        self.audience: frozenset[str] = frozenset()
        self.answered: list[str] = []  # the ids the client got a 202 for
        self.attempts = 0

    async def prepare(self) -> None:
        """The recipients: applicants straight in the database (not what is under test)."""
        if not self.count:
            return
        tag = await seed_applicants(self.system.database_url, self.recipient_count, PROGRAM)
        self.audience = frozenset(
            f"{tag}-{n}@example.org" for n in range(1, self.recipient_count + 1)
        )

    async def publish_during(self, seconds: float) -> None:
        """``count`` announcements at jittered times spread over ``seconds``."""
        gap = seconds / (self.count + 1)
        for n in range(self.count):
            await asyncio.sleep(gap * self.rng.uniform(0.5, 1.5))
            await self._publish(n)

    async def _publish(self, n: int) -> None:
        deadline = time.monotonic() + PUBLISH_PATIENCE_SECONDS
        async with httpx.AsyncClient(base_url=self.system.api, timeout=30) as client:
            while time.monotonic() < deadline:
                self.attempts += 1
                try:
                    answer = await client.post(
                        "/admin/announcements",
                        headers=await self._log_in(client),
                        json={
                            "subject": f"{self.prefix} {n} attempt {self.attempts}",
                            "body": "The campus is open on Saturday.",
                            "audience": {"kind": "program", "value": PROGRAM},
                        },
                    )
                except (httpx.TransportError, _NotNow):
                    answer = None  # the API is down or restarting: try again
                if answer is not None and answer.status_code == 202:
                    self.answered.append(str(answer.json()["announcementId"]))
                    return
                _refuse_client_errors(answer)
                await asyncio.sleep(1.0)
        raise AssertionError(f"announcement {n} not accepted in {PUBLISH_PATIENCE_SECONDS:g} s")

    async def _log_in(self, client: httpx.AsyncClient) -> dict[str, str]:
        """The administrator's bearer header; ``_NotNow`` while the API cannot log in."""
        login = await client.post(
            "/auth/token",
            data={
                "username": self.system.env.get("ADMIN_EMAIL", "admin@example.org"),
                "password": self.system.env.get("ADMIN_PASSWORD", "admin-dev-password"),
            },
        )
        _refuse_client_errors(login)
        if login.status_code != 200:
            raise _NotNow(f"log-in answered {login.status_code}")
        return {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def published(self) -> list[Announced]:
        """Every announcement of this run the database holds, with the admin view's figures."""
        async with await psycopg.AsyncConnection.connect(self.system.database_url) as conn:
            rows = await (
                await conn.execute(
                    "SELECT id::text FROM api.announcements WHERE subject LIKE %s ORDER BY 1",
                    (f"{self.prefix} %",),
                )
            ).fetchall()
        found = []
        async with httpx.AsyncClient(base_url=self.system.api, timeout=30) as client:
            for (announcement_id,) in rows:
                view = await self._view(client, str(announcement_id))
                found.append(
                    Announced(
                        announcement_id=str(announcement_id),
                        subject=str(view["subject"]),
                        status=str(view["status"]),
                        total=view["total"],
                        sent=int(view["sent"]),
                        failed=int(view["failed"]),
                    )
                )
        return found

    async def _view(self, client: httpx.AsyncClient, announcement_id: str) -> dict[str, Any]:
        view = await client.get(
            f"/admin/announcements/{announcement_id}", headers=await self._log_in(client)
        )
        view.raise_for_status()
        found: dict[str, Any] = view.json()
        return found


class _NotNow(Exception):
    """The API answered 5xx: it may answer later."""


def _refuse_client_errors(answer: httpx.Response | None) -> None:
    """A 4xx will not change by asking again: the run is wrong, stop it."""
    if answer is not None and 400 <= answer.status_code < 500:
        raise AssertionError(f"{answer.request.url.path}: {answer.status_code} {answer.text}")

"""Helpers for the reports and announcements tests: many applicants at once, straight into the
API's tables (what is tested is reading them, not admitting them), an administrator's client,
and the caught mail of one announcement or report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import psycopg

from devtools.seeding import seed_applicants
from devtools.smtp_catcher import MAIL_SUFFIX
from devtools.system import RunningSystem
from tests.support.waiting import eventually

__all__ = [
    "admin_client",
    "caught",
    "lane_in_queue_view",
    "lane_wait_count",
    "plain_text",
    "scalar",
    "seed_applicants",
]

ADMIN = {"username": "admin@example.org", "password": "admin-dev-password"}


async def scalar(database_url: str, query: str, *params: object) -> object:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return row[0]


@asynccontextmanager
async def admin_client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        token = await client.post("/auth/token", data=ADMIN)
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


def caught(mail_dir: Path, **wanted: str) -> list[tuple[Path, Message]]:
    """Every caught mail (its file and headers) whose headers hold ``wanted``
    (``Subject="..."``, ``X_Email_Template="report"``: underscores for dashes). Headers only,
    so polling a mailbox of thousands stays cheap."""
    parser = BytesHeaderParser(policy=default)
    found = []
    for file in sorted(mail_dir.glob(f"*{MAIL_SUFFIX}")) if mail_dir.is_dir() else []:
        with file.open("rb") as mail:
            headers = parser.parse(mail)
        if all(str(headers[name.replace("_", "-")]) == value for name, value in wanted.items()):
            found.append((file, headers))
    return found


def plain_text(file: Path) -> str:
    message = message_from_bytes(file.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def lane_wait_count(system: RunningSystem, lane: str) -> float:
    """How many messages the mailer's lane handled, from its lane-wait histogram on /metrics
    (the figure the lanes' SLA dashboards read)."""
    port = system.metrics_ports["mailer"]
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    prefix = f'admissions_lane_wait_seconds_count{{lane="{lane}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def lane_in_queue_view(admin: httpx.AsyncClient, lane: str) -> dict[str, Any]:
    """The lane's queue in the admin API's queue view, once the broker's statistics (refreshed
    every few seconds) show its consumer."""
    found: dict[str, Any] = {}

    async def consumed() -> bool:
        nonlocal found
        response = await admin.get("/admin/queues")
        assert response.status_code == 200, response.text
        [found] = [q for q in response.json()["queues"] if q["lane"] == lane]
        return int(found["consumers"]) >= 1

    await eventually(consumed, timeout=30, interval=1, what=f"the {lane} lane's consumer")
    return found

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

import httpx
import psycopg

from devtools.seeding import seed_applicants
from devtools.smtp_catcher import MAIL_SUFFIX

__all__ = ["admin_client", "caught", "plain_text", "scalar", "seed_applicants"]

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

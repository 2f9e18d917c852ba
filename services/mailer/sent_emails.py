"""The record of sent mail, written in the message's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection


@dataclass(frozen=True)
class SentEmail:
    message_id_header: str
    template: str
    recipient: str
    lane: str
    application_id: str | None


async def already_sent(connection: AsyncConnection[Any], message_id_header: str) -> bool:
    cursor = await connection.execute(
        "SELECT 1 FROM sent_emails WHERE message_id_header = %s", (message_id_header,)
    )
    return await cursor.fetchone() is not None


async def record_sent(connection: AsyncConnection[Any], email: SentEmail) -> None:
    await connection.execute(
        "INSERT INTO sent_emails (message_id_header, template, recipient, lane, application_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (
            email.message_id_header,
            email.template,
            email.recipient,
            email.lane,
            email.application_id,
        ),
    )

"""The record of sent mail, written in the message's transaction: the port the handler works
through, and its Postgres adapter (a fake drives the handler's unit tests). The API reads the
application mails of this record through the ``application_mail`` view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from psycopg import AsyncConnection


@dataclass(frozen=True)
class SentEmail:
    message_id_header: str
    template: str
    recipient: str
    lane: str
    application_id: str | None


class SentEmails(Protocol):
    async def already_sent(self, message_id_header: str) -> bool: ...

    async def record(self, email: SentEmail) -> None: ...


class PostgresSentEmails:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def already_sent(self, message_id_header: str) -> bool:
        cursor = await self.connection.execute(
            "SELECT 1 FROM sent_emails WHERE message_id_header = %s", (message_id_header,)
        )
        return await cursor.fetchone() is not None

    async def record(self, email: SentEmail) -> None:
        await self.connection.execute(
            "INSERT INTO sent_emails"
            " (message_id_header, template, recipient, lane, application_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                email.message_id_header,
                email.template,
                email.recipient,
                email.lane,
                email.application_id,
            ),
        )

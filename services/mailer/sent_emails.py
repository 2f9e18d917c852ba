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
    async def record(self, email: SentEmail) -> bool:
        """Record ``email`` as sent by this transaction; False if it was recorded before
        (sent already: do not send it again). Written before the send and committed after
        it, so a failed send leaves no record; a concurrent transaction recording the same
        mail waits for this one, then sees it."""


class PostgresSentEmails:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def record(self, email: SentEmail) -> bool:
        cursor = await self.connection.execute(
            "INSERT INTO sent_emails"
            " (message_id_header, template, recipient, lane, application_id)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (message_id_header) DO NOTHING RETURNING 1",
            (
                email.message_id_header,
                email.template,
                email.recipient,
                email.lane,
                email.application_id,
            ),
        )
        return await cursor.fetchone() is not None

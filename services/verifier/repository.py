"""The verifications table: the port the handler works through, and its Postgres adapter,
both inside the message's transaction (a fake drives the handler's unit tests)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from psycopg import AsyncConnection

from shared.events.catalog import DocumentsRejected, DocumentsVerified


class Verifications(Protocol):
    async def already_decided(self, application_id: str) -> bool: ...

    async def record_outcome(
        self, event: DocumentsVerified | DocumentsRejected, message_id: str, duration_ms: int
    ) -> bool:
        """Store the decision; False if the application already had one (nothing written)."""


class PostgresVerifications:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def already_decided(self, application_id: str) -> bool:
        cursor = await self.connection.execute(
            "SELECT 1 FROM verifications WHERE application_id = %s", (application_id,)
        )
        return await cursor.fetchone() is not None

    async def record_outcome(
        self, event: DocumentsVerified | DocumentsRejected, message_id: str, duration_ms: int
    ) -> bool:
        outcome = "verified" if isinstance(event, DocumentsVerified) else "rejected"
        documents = json.dumps([document.model_dump(mode="json") for document in event.documents])
        cursor = await self.connection.execute(
            "INSERT INTO verifications"
            " (application_id, outcome, documents, message_id, duration_ms)"
            " VALUES (%s, %s, %s::jsonb, %s, %s) ON CONFLICT (application_id) DO NOTHING",
            (event.application_id, outcome, documents, message_id, duration_ms),
        )
        return cursor.rowcount == 1

"""The verifications table, read and written inside the message's transaction."""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from shared.events.catalog import DocumentsRejected, DocumentsVerified


async def already_decided(conn: AsyncConnection[Any], application_id: str) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM verifications WHERE application_id = %s", (application_id,)
    )
    return await cursor.fetchone() is not None


async def record_outcome(
    conn: AsyncConnection[Any],
    event: DocumentsVerified | DocumentsRejected,
    message_id: str,
    duration_ms: int,
) -> bool:
    """Store the decision; False if the application already had one (nothing is written)."""
    outcome = "verified" if isinstance(event, DocumentsVerified) else "rejected"
    documents = json.dumps([document.model_dump(mode="json") for document in event.documents])
    cursor = await conn.execute(
        "INSERT INTO verifications (application_id, outcome, documents, message_id, duration_ms)"
        " VALUES (%s, %s, %s::jsonb, %s, %s) ON CONFLICT (application_id) DO NOTHING",
        (event.application_id, outcome, documents, message_id, duration_ms),
    )
    return cursor.rowcount == 1

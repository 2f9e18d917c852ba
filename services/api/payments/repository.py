"""SQL for the provider's webhooks: replay protection and the applicant's address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection


@dataclass(frozen=True)
class RecordedWebhook:
    applicant_email: str
    correlation_id: str
    first_time: bool


# One statement: find the application (and its applicant's address), record the provider's
# event id unless it was seen before. A concurrent duplicate waits on the primary key.
_RECORD = """
WITH target AS (
    SELECT a.id, a.correlation_id, u.email
    FROM applications a JOIN users u ON u.id = a.applicant_id
    WHERE a.id = %(application_id)s
),
recorded AS (
    INSERT INTO webhook_events (provider_event_id, application_id, payment_id, status)
    SELECT %(event_id)s, id, %(payment_id)s, %(status)s FROM target
    ON CONFLICT (provider_event_id) DO NOTHING
    RETURNING 1
)
SELECT t.email, t.correlation_id, EXISTS (SELECT 1 FROM recorded) FROM target t
"""


async def record_webhook(
    conn: AsyncConnection[Any], *, event_id: str, application_id: str, payment_id: str, status: str
) -> RecordedWebhook | None:
    """None when the application does not exist."""
    cursor = await conn.execute(
        _RECORD,
        {
            "event_id": event_id,
            "application_id": application_id,
            "payment_id": payment_id,
            "status": status,
        },
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    email, correlation_id, first_time = row
    return RecordedWebhook(email, correlation_id, bool(first_time))

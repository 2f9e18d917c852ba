"""The applications as the projector reads and writes them: the port its handler works
through, and its Postgres adapter (an in-memory one drives the handler's unit tests)."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from psycopg import AsyncConnection

from services.api.projector.state import ApplicationState, Transition
from services.api.statuses import Status


class Applications(Protocol):
    async def load_for_update(self, application_id: uuid.UUID) -> ApplicationState | None:
        """The application's state, locked until the transaction ends; None if unknown."""

    async def save(
        self,
        application_id: uuid.UUID,
        before: ApplicationState,
        transition: Transition,
        event_type: str,
        message_id: uuid.UUID,
    ) -> None:
        """Write the new state (if it changed) and the history the transition left."""


_LOAD = """
SELECT status, progress, docs_verified, payment_completed, checkout_url, payment_id
FROM applications WHERE id = %s FOR UPDATE
"""
_UPDATE = """
UPDATE applications SET status = %s, progress = %s, docs_verified = %s, payment_completed = %s,
       checkout_url = %s, payment_id = %s, updated_at = now()
WHERE id = %s
"""
_HISTORY = """
INSERT INTO application_history (application_id, status, progress, event_type, message_id, note)
VALUES (%s, %s, %s, %s, %s, %s)
"""


class PostgresApplications:
    """The row lock (SELECT ... FOR UPDATE) serialises events of one application across
    replicas: each reads the state the previous one wrote."""

    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def load_for_update(self, application_id: uuid.UUID) -> ApplicationState | None:
        row = await (await self.connection.execute(_LOAD, (application_id,))).fetchone()
        if row is None:
            return None
        status, progress, docs, paid, checkout_url, payment_id = row
        return ApplicationState(Status(status), progress, docs, paid, checkout_url, payment_id)

    async def save(
        self,
        application_id: uuid.UUID,
        before: ApplicationState,
        transition: Transition,
        event_type: str,
        message_id: uuid.UUID,
    ) -> None:
        after = transition.state
        if after != before:
            await self.connection.execute(
                _UPDATE,
                (
                    after.status.value,
                    after.progress,
                    after.docs_verified,
                    after.payment_completed,
                    after.checkout_url,
                    after.payment_id,
                    application_id,
                ),
            )
        if transition.history:
            async with self.connection.cursor() as cursor:
                await cursor.executemany(
                    _HISTORY,
                    [
                        (application_id, e.status.value, e.progress, event_type, message_id, e.note)
                        for e in transition.history
                    ],
                )

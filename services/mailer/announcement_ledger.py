"""The announcements' records in the mailer's unit of work: the expansion runs and the
delivery ledger (``announcement_runs``, ``announcement_deliveries``), and what the API's views
say (``announcement_audience``, ``announcement_state``, ``announcement_opt_out``, in the API's
schema, named by ``views``). ``services.mailer.announcements`` says when each is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from psycopg import AsyncConnection, sql

from shared.events.catalog import Audience

# Recipients read per round trip.
AUDIENCE_PAGE = 1000


class AnnouncementLedger(Protocol):
    async def start_run(self, announcement_id: str) -> bool:
        """Record the expansion; False if it was expanded before."""

    async def set_total(self, announcement_id: str, total: int) -> None: ...

    def audience(self, views: str, audience: Audience) -> AsyncIterator[list[str]]:
        """The recipients' addresses, a page at a time."""

    async def state(self, views: str, announcement_id: str, recipient: str) -> tuple[bool, bool]:
        """(cancelled, the recipient has unsubscribed)."""

    async def record(self, announcement_id: str, recipient: str, outcome: str) -> None:
        """A delivery that sends nothing (cancelled, unsubscribed)."""

    async def record_sent(self, announcement_id: str, recipient: str) -> bool:
        """The ``sent`` row; False if an earlier attempt committed it."""

    async def record_refused(self, announcement_id: str, recipient: str) -> None: ...


def audience_query(api_schema: str, audience: Audience) -> sql.Composed:
    view = sql.Identifier(api_schema, "announcement_audience")
    where: sql.Composable = sql.SQL("true")
    if audience.kind == "program":
        where = sql.SQL("program = {}").format(sql.Literal(audience.value))
    elif audience.kind == "status":
        where = sql.SQL("status = {}").format(sql.Literal(audience.value))
    # No ORDER BY: the order of the deliveries does not matter, and without it the planner
    # joins and de-duplicates by hashing instead of walking the users' e-mail index.
    return sql.SQL("SELECT DISTINCT email FROM {} WHERE {}").format(view, where)


_RUN = """
INSERT INTO announcement_runs (announcement_id, total) VALUES (%s, 0)
ON CONFLICT DO NOTHING RETURNING 1
"""
_RUN_TOTAL = "UPDATE announcement_runs SET total = %s WHERE announcement_id = %s"
_STATE = """
SELECT coalesce((SELECT cancelled FROM {state} WHERE announcement_id = %s), false),
       EXISTS (SELECT 1 FROM {opt_out} WHERE email = %s)
"""
_RECORD = """
INSERT INTO announcement_deliveries (announcement_id, recipient, outcome) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING
"""
# clock_timestamp(): in the message's transaction now() is when it began, before the token
# wait; the ledger's times are when each mail went out (the fan-out rate is read from them).
_RECORD_SENT = """
INSERT INTO announcement_deliveries (announcement_id, recipient, outcome, updated_at)
VALUES (%s, %s, 'sent', clock_timestamp()) ON CONFLICT DO NOTHING RETURNING 1
"""
_REFUSED = """
UPDATE announcement_deliveries SET outcome = 'refused', updated_at = clock_timestamp()
WHERE announcement_id = %s AND recipient = %s
"""


class PostgresAnnouncementLedger:
    def __init__(self, connection: AsyncConnection[Any]) -> None:
        self.connection = connection

    async def start_run(self, announcement_id: str) -> bool:
        return (
            await (await self.connection.execute(_RUN, (announcement_id,))).fetchone() is not None
        )

    async def set_total(self, announcement_id: str, total: int) -> None:
        await self.connection.execute(_RUN_TOTAL, (total, announcement_id))

    async def audience(self, views: str, audience: Audience) -> AsyncIterator[list[str]]:
        # A server-side cursor (memory stays flat whatever the audience) is planned for its
        # first rows (cursor_tuple_fraction 0.1): nested loops over indexes. Every row is read
        # here, so plan for all of them.
        await self.connection.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        async with self.connection.cursor(name="audience") as cursor:
            await cursor.execute(audience_query(views, audience))
            while page := await cursor.fetchmany(AUDIENCE_PAGE):
                yield [email for (email,) in page]

    async def state(self, views: str, announcement_id: str, recipient: str) -> tuple[bool, bool]:
        query = sql.SQL(_STATE).format(
            state=sql.Identifier(views, "announcement_state"),
            opt_out=sql.Identifier(views, "announcement_opt_out"),
        )
        row = await (await self.connection.execute(query, (announcement_id, recipient))).fetchone()
        assert row is not None
        return bool(row[0]), bool(row[1])

    async def record(self, announcement_id: str, recipient: str, outcome: str) -> None:
        await self.connection.execute(_RECORD, (announcement_id, recipient, outcome))

    async def record_sent(self, announcement_id: str, recipient: str) -> bool:
        cursor = await self.connection.execute(_RECORD_SENT, (announcement_id, recipient))
        return await cursor.fetchone() is not None

    async def record_refused(self, announcement_id: str, recipient: str) -> None:
        await self.connection.execute(_REFUSED, (announcement_id, recipient))

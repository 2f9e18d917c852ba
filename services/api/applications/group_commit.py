"""Group commit: the submissions that arrive while a statement is in flight go together in the
next one.

At low load a submission is written alone, at once. Under load, dozens wait a few
milliseconds for the statement ahead of them and then share one round trip, one parse and one
commit (``insert_submissions``), which is what lets the accept path keep pace with Postgres
instead of with per-statement overhead. Each submission still gets its own outcome: its
answer, the stored answer of an earlier request with its key (a replay), or a conflict.

If a shared statement fails because of one row (an account deleted since its token was
issued, say), its submissions are written again one by one, so only that one fails. If the
database is unavailable, every waiting submission gets that error (the route answers 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg import AsyncConnection

from services.api.applications.repository import (
    IdempotencyConflict,
    Outcome,
    Submission,
    TokenRevoked,
    insert_submissions,
)

ConnectionFactory = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]
_Waiting = tuple[Submission, "asyncio.Future[Outcome]"]
# Errors that belong to the database, not to one row: retrying row by row would only wait
# for the same outage once per row.
_UNAVAILABLE: tuple[type[BaseException], ...] = (psycopg.OperationalError,)


class GroupCommit:
    """One writer task per API process; at most ``max_rows`` submissions per statement."""

    def __init__(self, connection: ConnectionFactory, outbox_schema: str, max_rows: int = 64):
        self._connection = connection
        self._outbox_schema = outbox_schema
        self._max_rows = max_rows
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self.statements = 0  # how many statements were sent (the tests read it)

    async def write(self, submission: Submission) -> Outcome:
        """The submission's outcome once its statement committed; raises
        ``IdempotencyConflict``, ``TokenRevoked``, or the database's error."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((submission, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="group-commit")
        return await done

    async def _write_waiting(self) -> None:
        while self._waiting:
            group = self._waiting[: self._max_rows]
            del self._waiting[: self._max_rows]
            # A client that went away before its turn: nothing of it is written.
            group = [(s, done) for s, done in group if not done.done()]
            if group:
                try:
                    await self._write_group(group)
                except BaseException as error:  # never leave a request waiting for ever
                    for _, done in group:
                        _settle(done, error)
                    if not isinstance(error, Exception):
                        raise

    async def _write_group(self, group: list[_Waiting]) -> None:
        try:
            outcomes = await self._insert([s for s, _ in group])
        except _UNAVAILABLE:
            raise
        except psycopg.Error:
            if len(group) == 1:
                raise
            for submission, done in group:  # one by one: only the row at fault fails
                try:
                    _settle(done, (await self._insert([submission]))[0])
                except psycopg.Error as error:
                    _settle(done, error)
            return
        for (_, done), outcome in zip(group, outcomes, strict=True):
            _settle(done, outcome)

    async def _insert(
        self, submissions: list[Submission]
    ) -> list[Outcome | IdempotencyConflict | TokenRevoked]:
        async with self._connection() as conn:
            outcomes = await insert_submissions(conn, self._outbox_schema, submissions)
        self.statements += 1
        return outcomes


def _settle(done: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)

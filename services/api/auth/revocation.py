"""Whether a token is still its user's: a password reset moves the user's token version on,
and a token carries the version it was issued under (``tokens.py``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg import AsyncConnection

from services.api.auth import repository


class TokenVersions(Protocol):
    async def current(self, user_id: str) -> int | None:
        """The version a token of ``user_id`` must carry; None when there is no such user."""
        ...


@dataclass(frozen=True)
class PostgresTokenVersions:
    """One primary-key read per request that is not a submission (those check it in their
    own statement)."""

    connection: Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]

    async def current(self, user_id: str) -> int | None:
        async with self.connection() as conn:
            return await repository.token_version(conn, user_id)

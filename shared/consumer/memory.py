"""An in-memory unit of work for unit tests: staged changes become visible on commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

from shared.events.envelope import Envelope


class MemoryTransaction:
    def __init__(self, store: InMemoryTransactions) -> None:
        self._store = store
        self.claims: set[tuple[str, str]] = set()
        self.outbox: list[Envelope] = []

    async def claim(self, consumer: str, message_id: str) -> bool:
        key = (consumer, message_id)
        if key in self._store.processed or key in self.claims:
            return False
        self.claims.add(key)
        return True

    async def claim_many(self, consumer: str, message_ids: Collection[str]) -> set[str]:
        return {message_id for message_id in message_ids if await self.claim(consumer, message_id)}

    async def add_outbox(self, envelopes: Sequence[Envelope]) -> None:
        self.outbox.extend(envelopes)


class InMemoryTransactions:
    def __init__(self) -> None:
        self.processed: set[tuple[str, str]] = set()
        self.outbox: list[Envelope] = []
        self.commits = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[MemoryTransaction]:
        transaction = MemoryTransaction(self)
        yield transaction  # an exception here skips the commit below: a rollback
        self.processed |= transaction.claims
        self.outbox.extend(transaction.outbox)
        self.commits += 1

"""The unit of work a consumer runs its messages in.

One transaction holds the idempotency claims, the handlers' own writes and the outgoing
events; it commits before the messages are acknowledged, so a crash at any point either
leaves nothing (the messages come back) or everything (the redeliveries are duplicates).
A transaction holds one message, or a batch of them (``claim_many``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from shared.events.envelope import Envelope


class Transaction(Protocol):
    async def claim(self, consumer: str, message_id: str) -> bool:
        """Record the message as processed by ``consumer``; False if it already was."""

    async def claim_many(self, consumer: str, message_ids: Collection[str]) -> set[str]:
        """Record every message in one statement; the ids claimed now (not seen before)."""

    async def add_outbox(self, envelopes: Sequence[Envelope]) -> None:
        """Queue events to publish once this transaction commits."""


TxT = TypeVar("TxT", bound=Transaction)
TxT_co = TypeVar("TxT_co", bound=Transaction, covariant=True)


class TransactionFactory(Protocol[TxT_co]):
    def begin(self) -> AbstractAsyncContextManager[TxT_co]:
        """Commit on normal exit, roll back on an exception."""

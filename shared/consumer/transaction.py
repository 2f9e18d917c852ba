"""The unit of work a consumer runs each message in.

One transaction holds the idempotency claim, the handler's own writes and the outgoing
events; it commits before the message is acknowledged, so a crash at any point either
leaves nothing (the message comes back) or everything (the redelivery is a duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from shared.events.envelope import Envelope


class Transaction(Protocol):
    async def claim(self, consumer: str, message_id: str) -> bool:
        """Record the message as processed by ``consumer``; False if it already was."""

    async def add_outbox(self, envelopes: Sequence[Envelope]) -> None:
        """Queue events to publish once this transaction commits."""


TxT = TypeVar("TxT", bound=Transaction)
TxT_co = TypeVar("TxT_co", bound=Transaction, covariant=True)


class TransactionFactory(Protocol[TxT_co]):
    def begin(self) -> AbstractAsyncContextManager[TxT_co]:
        """Commit on normal exit, roll back on an exception."""

"""Fault injection for chaos runs: transient failures and added latency, off by default.

Three points can fail: every message handler (``handler``), the payment provider's calls
(``provider``) and the mailer's SMTP sends (``smtp``). Each has a failure probability and an
added latency, read from the service's settings (``FAULT_<POINT>_FAILURE_RATE``,
``FAULT_<POINT>_LATENCY_MS``; ``FAULT_SEED`` makes a run repeatable).

An injected fault is a ``TransientError``: it models what a retry recovers from. So it is never
injected on a message's last attempt: a fault that exhausted the retry budget by itself would
only prove that the dice can roll badly; what exhausts it in a chaos run must be a real failure.
External calls happen inside a handler, which marks the last attempt in a context variable.
A failing external call fails half of the time before the call and half of the time after it
(the provider or the SMTP server did the work, but its answer was lost), the harder case.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from shared.consumer.transaction import TxT
from shared.errors import TransientError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from shared.consumer.runtime import Handler, MessageContext
    from shared.settings import CoreSettings

T = TypeVar("T")

# True while a handler runs a message's last attempt: no fault is injected then.
_last_attempt: ContextVar[bool] = ContextVar("fault_last_attempt", default=False)


class InjectedFault(TransientError):
    """A failure made up on purpose by the chaos settings."""


@contextmanager
def sparing(last_attempt: bool) -> Iterator[None]:
    token = _last_attempt.set(last_attempt)
    try:
        yield
    finally:
        _last_attempt.reset(token)


@dataclass
class FaultPoint:
    name: str
    failure_rate: float
    latency_ms: float
    rng: random.Random

    @property
    def enabled(self) -> bool:
        return self.failure_rate > 0 or self.latency_ms > 0

    async def delay(self) -> None:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)

    def roll(self) -> float:
        """A number in [0, 1); 1.0 (never a failure) when nothing may fail now."""
        if self.failure_rate <= 0 or _last_attempt.get():
            return 1.0
        return self.rng.random()

    async def before(self) -> None:
        """Latency, then maybe a failure: for work that has not started (a handler)."""
        await self.delay()
        if self.roll() < self.failure_rate:
            raise InjectedFault(f"injected {self.name} failure")

    async def around(self, call: Awaitable[T]) -> T:
        """``await call`` with latency, failing before it or losing its answer after it."""
        if not self.enabled:
            return await call
        await self.delay()
        roll = self.roll()
        if roll < self.failure_rate / 2:
            if asyncio.iscoroutine(call):
                call.close()  # never awaited: do not warn about it
            raise InjectedFault(f"injected {self.name} failure before the call")
        result = await call
        if roll < self.failure_rate:
            raise InjectedFault(f"injected {self.name} failure: the answer was lost")
        return result


@dataclass
class Faults:
    handler: FaultPoint
    provider: FaultPoint
    smtp: FaultPoint

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Faults:
        # One generator per point, each seeded from the run's seed: the points do not shift
        # each other's sequences.
        seeder = random.Random(settings.fault_seed)
        points = {
            name: FaultPoint(
                name,
                getattr(settings, f"fault_{name}_failure_rate"),
                getattr(settings, f"fault_{name}_latency_ms"),
                random.Random(seeder.getrandbits(64)),
            )
            for name in ("handler", "provider", "smtp")
        }
        return cls(**points)

    @classmethod
    def none(cls) -> Faults:
        rng = random.Random(0)
        return cls(*(FaultPoint(name, 0.0, 0.0, rng) for name in ("handler", "provider", "smtp")))

    def wrap(self, handler: Handler[TxT]) -> Handler[TxT]:
        """``handler`` behind the handler fault point, marking the last attempt."""
        point = self.handler

        async def faulty(ctx: MessageContext[TxT]) -> None:
            with sparing(ctx.last_attempt):
                if point.enabled:
                    await point.before()
                await handler(ctx)

        return faulty

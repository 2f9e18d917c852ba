"""Admission control for submissions: how many a process takes at once, and how long the ones
it turns away should wait before they come back.

``AdmissionLimit`` counts the submissions being read or written; past its limit a submission
is answered 503 at once (``accept.py``). ``RetryAdvice`` chooses that answer's Retry-After.
A fixed value does not work under a long overload: with thousands of clients waiting and told
"1 s", their retries alone arrive at thousands per second, each one a request to parse and a
body to read and drop. So the advice follows the overload: every ``window`` seconds it
compares the retries turned away with the submissions taken, and scales the wait so that the
clients waiting come back at about ``RETRIES_PER_ACCEPT`` times the rate the process accepts
(a turned-away request costs a fraction of an accepted one). When nothing is turned away the
wait halves back towards the minimum. Pure, with an injectable clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Retries arriving per submission accepted, once the advice has settled: enough that a slot
# freed is soon taken again, few enough that turning them away stays cheap.
RETRIES_PER_ACCEPT = 2.0


class RetryAdvice:
    def __init__(
        self,
        minimum: float = 1.0,
        maximum: float = 60.0,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.minimum, self.maximum, self.window = minimum, maximum, window
        self._clock = clock
        self._wait = minimum
        self._window_ends = clock() + window
        self._accepted = 0
        self._shed = 0

    def note_accepted(self) -> None:
        self._roll()
        self._accepted += 1

    def note_shed(self) -> None:
        self._roll()
        self._shed += 1

    @property
    def seconds(self) -> int:
        """Retry-After for a submission turned away now (whole seconds, as HTTP has it)."""
        self._roll()
        return math.ceil(self._wait)

    def _roll(self) -> None:
        now = self._clock()
        if now < self._window_ends:
            return
        if self._shed == 0:
            wanted = self._wait / 2
        else:
            # The clients waiting are about shed x wait; spread over the time it takes to
            # serve them at this window's pace, with RETRIES_PER_ACCEPT of them per slot.
            wanted = self._wait * self._shed / (RETRIES_PER_ACCEPT * max(self._accepted, 1))
        # Halfway there each window: steady under noise, still doubling within a few seconds.
        self._wait = min(self.maximum, max(self.minimum, (self._wait + wanted) / 2))
        self._accepted = self._shed = 0
        self._window_ends = now + self.window


class AdmissionLimit:
    """How many submissions this process is reading or writing; past ``limit``, none more."""

    def __init__(self, limit: int, advice: RetryAdvice | None = None) -> None:
        self.limit = limit
        self.advice = advice or RetryAdvice()
        self.in_flight = 0
        self.shed = 0  # answered 503 since start (tests and benchmarks read it)

    def try_enter(self) -> bool:
        if self.in_flight >= self.limit:
            self.shed += 1
            self.advice.note_shed()
            return False
        self.in_flight += 1
        return True

    def leave(self, accepted: bool) -> None:
        self.in_flight -= 1
        if accepted:
            self.advice.note_accepted()

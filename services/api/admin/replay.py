"""Replaying dead letters: which ones, with which headers, how fast. Pure functions, no I/O.

A replayed copy goes to the ``admissions.retry`` exchange with the work queue's name as routing
key (that exchange is bound straight to each work queue), so it reaches that one queue only,
not every subscriber of its event type. It keeps its body and its message_id, so a consumer
that already processed it skips it as a duplicate: replaying twice is harmless. The failure
headers go (the next failure writes its own), the attempt count restarts at 1, and
``x-replayed-by`` / ``x-replayed-at`` say who sent it back and when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.api.admin.fingerprints import DeadLetter
from shared.consumer import policy

REPLAYED_BY = "x-replayed-by"
REPLAYED_AT = "x-replayed-at"
_DROPPED_PREFIXES = ("x-error-", "x-death", "x-first-death-", "x-last-death-")
_DROPPED = frozenset({policy.ATTEMPT, policy.LAST_ERROR, policy.DEAD_LETTERED_AT})


@dataclass(frozen=True)
class Selector:
    """Exactly one way of choosing: by message ids, by fingerprint, or every message."""

    message_ids: frozenset[str] | None = None
    fingerprint: str | None = None
    all: bool = False

    def __post_init__(self) -> None:
        chosen = [self.message_ids is not None, self.fingerprint is not None, self.all]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one of messageIds, fingerprint or all")
        if self.message_ids is not None and not self.message_ids:
            raise ValueError("messageIds must not be empty")

    def matches(self, letter: DeadLetter) -> bool:
        if self.all:
            return True
        if self.message_ids is not None:
            return letter.message_id in self.message_ids
        return letter.fingerprint == self.fingerprint

    def describe(self) -> dict[str, Any]:
        """As recorded in ``replays.selector`` (camelCase, like the request)."""
        if self.message_ids is not None:
            return {"messageIds": sorted(self.message_ids)}
        if self.fingerprint is not None:
            return {"fingerprint": self.fingerprint}
        return {"all": True}


def replay_headers(headers: Mapping[str, Any], replayed_by: str, now: datetime) -> dict[str, Any]:
    kept = {
        key: value
        for key, value in headers.items()
        if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }
    kept[REPLAYED_BY] = replayed_by
    kept[REPLAYED_AT] = now.isoformat()
    return kept


def pacing_delay(sent: int, rate_per_second: float, elapsed: float) -> float:
    """Seconds to wait before sending message number ``sent`` (0-based) so that the replay
    never runs faster than ``rate_per_second`` on average since it started."""
    due = sent / rate_per_second
    return max(0.0, due - elapsed)

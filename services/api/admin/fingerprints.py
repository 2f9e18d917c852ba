"""Dead letters grouped by failure fingerprint: pure functions, no I/O.

A fingerprint is queue + exception type + the error message with its variable parts (UUIDs,
hex runs such as SHA-256 digests, numbers) replaced by placeholders, so that "blob 3fa9... not
found" and "blob 07c1... not found" are one problem, told once with a count.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.consumer import policy

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
_PREFIXED_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
# A digest or an object id: 16+ hex characters (no word is that long in hex letters only), or
# 6+ that mix digits and letters; not an ordinary word ("accepted") nor a plain number
# (numbers get their own placeholder).
_HEX_RUN = re.compile(
    r"\b(?:[0-9a-fA-F]{16,}|(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,})\b"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")

UNKNOWN_ERROR = "unknown"


def normalise_error_message(message: str) -> str:
    text = _UUID.sub("<uuid>", message)
    text = _PREFIXED_HEX.sub("<hex>", text)
    text = _HEX_RUN.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


def fingerprint(queue: str, error_type: str, normalised_message: str) -> str:
    """A short stable id for a failure kind: operators pass it back to replay that group."""
    key = f"{queue}\x00{error_type}\x00{normalised_message}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class DeadLetter:
    """One message read from ``<queue>.dlq`` (``queue`` is the work queue it failed on)."""

    queue: str
    message_id: str
    headers: Mapping[str, Any]
    body: bytes
    type: str | None = None
    content_type: str | None = None
    correlation_id: str | None = None

    @property
    def error_type(self) -> str:
        """Our runtime's header; a message the broker dead-lettered itself (a quorum queue's
        delivery limit) has only the broker's reason."""
        found = self.headers.get(policy.ERROR_TYPE)
        if isinstance(found, str) and found:
            return found
        reason = self.headers.get("x-first-death-reason")
        if isinstance(reason, str) and reason:
            return f"broker:{reason}"
        return UNKNOWN_ERROR

    @property
    def error_message(self) -> str:
        found = self.headers.get(policy.ERROR_MESSAGE)
        return found if isinstance(found, str) else ""

    @property
    def dead_lettered_at(self) -> datetime | None:
        raw = self.headers.get(policy.DEAD_LETTERED_AT)
        if not isinstance(raw, str):
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.queue, self.error_type, normalise_error_message(self.error_message))


@dataclass
class FailureGroup:
    fingerprint: str
    queue: str
    error_type: str
    message: str  # normalised
    sample: DeadLetter
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    message_ids: list[str] = field(default_factory=list)

    def add(self, letter: DeadLetter) -> None:
        self.count += 1
        self.message_ids.append(letter.message_id)
        seen = letter.dead_lettered_at
        if seen is not None:
            if self.first_seen is None or seen < self.first_seen:
                self.first_seen = seen
            if self.last_seen is None or seen > self.last_seen:
                self.last_seen = seen


def group_dead_letters(letters: Iterable[DeadLetter]) -> list[FailureGroup]:
    """Groups by fingerprint, the largest first (then by queue, for a stable order)."""
    groups: dict[str, FailureGroup] = {}
    for letter in letters:
        key = letter.fingerprint
        if key not in groups:
            groups[key] = FailureGroup(
                fingerprint=key,
                queue=letter.queue,
                error_type=letter.error_type,
                message=normalise_error_message(letter.error_message),
                sample=letter,
            )
        groups[key].add(letter)
    return sorted(groups.values(), key=lambda group: (-group.count, group.queue, group.fingerprint))

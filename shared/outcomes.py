"""What the consumer runtime did with one delivery: one of these, and nothing else.

A ``StrEnum``: each member is its string, so metric labels (``outcome="dead-lettered"``), the
per-message timeline's rows and log fields read the same as before, and a plain string from
older rows compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    PROCESSED = "processed"  # the handler ran and its transaction committed; then acked
    DUPLICATE = "duplicate"  # already processed (inbox claim): acked, handler not run
    RETRIED = "retried"  # a transient failure: copied to the next retry tier, then acked
    DEAD_LETTERED = "dead-lettered"  # permanent, or out of attempts: to ``<queue>.dlq``
    REQUEUED = "requeued"  # its retry or dead-letter copy was not confirmed: back to the queue

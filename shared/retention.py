"""Retention rules: how long each table that grows keeps its rows, swept by ``shared.sweeper``.

Every service lists its own rules (``services/<name>/retention.py``) from its settings; the
sweeper of that service deletes, in batches, each rule's rows whose ``column`` is older than
``keep``. The messaging tables every service has (processed message ids, published outbox
rows, the message log) follow ``SWEEPER_RETENTION_HOURS`` and are not listed here.

A rule's column is the moment after which a row has no use left: an expiry for secrets (a
reset token is useless once expired, kept a little longer for support questions), the time of
receipt for records of what already happened (a webhook's event id, an audit entry). Where
that moment may not have come (a report that failed has no link to expire), ``or_else`` names
the columns read instead, in order: the row is aged by the first of them that is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetentionRule:
    table: str  # in the service's own schema
    column: str  # a timestamptz: rows with ``column < now() - keep`` are deleted
    keep: timedelta
    or_else: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.or_else)

    def __post_init__(self) -> None:
        if self.keep < timedelta(0):
            raise ValueError(f"{self.table}: a retention cannot be negative")

"""The SQL of each report kind: a pure function from the request to one SELECT.

Reports read other services' data only through the read-only views they publish for the
mailer (``shared.db.migrate.READ_ONLY_VIEWS``): the API's applications, the payments'
reconciliation, and every service's ``dead_letter_log`` for the dead-letter summary. Filters are
composed as literals, not bound parameters, because ``COPY (...) TO STDOUT`` takes none; the
values go through ``sql.Literal`` (quoted by the driver), never through string formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from shared.events.catalog import ReportFilters, ReportKind


@dataclass(frozen=True)
class ReportSources:
    """Where the views live: the schema of each service (its role's name)."""

    api: str = "api"
    payments: str = "payments"
    # Every schema whose dead-letter log the summary reads (the mailer's own included).
    dead_letter_logs: Sequence[str] = ("api", "verifier", "payments", "mailer")


@dataclass(frozen=True)
class ReportQuery:
    columns: tuple[str, ...]
    select: sql.Composed  # the rows, in the report's order

    def count(self) -> sql.Composed:
        return sql.SQL("SELECT count(*) FROM ({}) AS report").format(self.select)

    def copy_csv(self) -> sql.Composed:
        return sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(self.select)


APPLICATION_COLUMNS = (
    "application_id",
    "applicant_email",
    "program",
    "status",
    "progress",
    "submitted_at",
    "updated_at",
)
PAYMENT_COLUMNS = (
    "application_id",
    "payment_id",
    "status",
    "amount_cents",
    "currency",
    "failure_reason",
    "settled_by_event",
    "created_at",
    "updated_at",
)
DEAD_LETTER_COLUMNS = (
    "service",
    "queue",
    "error_type",
    "dead_letters",
    "first_at",
    "last_at",
    "example_error",
)


def report_query(kind: ReportKind, filters: ReportFilters, sources: ReportSources) -> ReportQuery:
    if kind == "applications":
        return _applications(filters, sources)
    if kind == "payments":
        return _payments(filters, sources)
    return _dead_letters(filters, sources)


def _conditions(
    filters: ReportFilters, time_column: str, *, program: bool = True
) -> sql.Composable:
    conditions: list[sql.Composable] = []
    if program and filters.program is not None:
        conditions.append(sql.SQL("program = {}").format(sql.Literal(filters.program)))
    if filters.status is not None:
        conditions.append(sql.SQL("status = {}").format(sql.Literal(filters.status)))
    column = sql.Identifier(time_column)
    if filters.created_from is not None:
        conditions.append(sql.SQL("{} >= {}").format(column, sql.Literal(filters.created_from)))
    if filters.created_to is not None:
        conditions.append(sql.SQL("{} < {}").format(column, sql.Literal(filters.created_to)))
    if not conditions:
        return sql.SQL("true")
    return sql.SQL(" AND ").join(conditions)


def _columns(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(column) for column in columns)


def _applications(filters: ReportFilters, sources: ReportSources) -> ReportQuery:
    select = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY program, status, submitted_at").format(
        _columns(APPLICATION_COLUMNS),
        sql.Identifier(sources.api, "report_applications"),
        _conditions(filters, "submitted_at"),
    )
    return ReportQuery(APPLICATION_COLUMNS, select)


def _payments(filters: ReportFilters, sources: ReportSources) -> ReportQuery:
    select = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY created_at, application_id").format(
        _columns(PAYMENT_COLUMNS),
        sql.Identifier(sources.payments, "payment_reconciliation"),
        _conditions(filters, "created_at", program=False),
    )
    return ReportQuery(PAYMENT_COLUMNS, select)


def _dead_letters(filters: ReportFilters, sources: ReportSources) -> ReportQuery:
    logs = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {} AS service, queue, error_type, error, at FROM {}").format(
            sql.Literal(schema), sql.Identifier(schema, "dead_letter_log")
        )
        for schema in sources.dead_letter_logs
    )
    time_bounds = ReportFilters(created_from=filters.created_from, created_to=filters.created_to)
    select = sql.SQL(
        "SELECT service, queue, coalesce(error_type, '') AS error_type, count(*) AS dead_letters,"
        " min(at) AS first_at, max(at) AS last_at, max(error) AS example_error"
        " FROM ({}) AS dead WHERE {} GROUP BY service, queue, error_type"
        " ORDER BY dead_letters DESC, service, queue, error_type"
    ).format(logs, _conditions(time_bounds, "at", program=False))
    return ReportQuery(DEAD_LETTER_COLUMNS, select)

"""The pure parts of reports and announcements: each report kind's SQL, the audience query,
the ids that make a fan-out idempotent, the states the admin API shows, the unsubscribe MAC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql
from pydantic import ValidationError

from services.api.admin.announcements import announcement_state
from services.api.admin.reports import report_state
from services.mailer.announcement_ledger import audience_query
from services.mailer.announcements import delivery_message_id
from services.mailer.report_queries import (
    APPLICATION_COLUMNS,
    ReportSources,
    report_query,
)
from shared.events.catalog import Audience, ReportFilters, ReportKind
from shared.unsubscribe import UnsubscribeSigner

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def text(composed: sql.Composable) -> str:
    """The statement as the server would get it (literals quoted as psycopg quotes them)."""
    return composed.as_string(None)


@pytest.mark.parametrize(
    ("kind", "view"),
    [
        ("applications", '"api"."report_applications"'),
        ("payments", '"payments"."payment_reconciliation"'),
        ("dead_letters", '"verifier"."dead_letter_log"'),
    ],
)
def test_each_kind_reads_only_the_view_published_for_it(kind: ReportKind, view: str) -> None:
    query = report_query(kind, ReportFilters(), ReportSources())
    assert view in text(query.select)
    assert text(query.copy_csv()).startswith("COPY (SELECT ")
    assert text(query.copy_csv()).endswith("TO STDOUT WITH (FORMAT csv, HEADER true)")
    assert text(query.count()).startswith("SELECT count(*) FROM (SELECT ")


def test_filters_become_quoted_literals_and_bound_the_time() -> None:
    filters = ReportFilters(
        program="Law'; DROP TABLE applications; --",
        status="completed",
        created_from=NOW - timedelta(days=7),
        created_to=NOW,
    )
    query = report_query("applications", filters, ReportSources())
    statement = text(query.select)
    # the quote is doubled: the value stays a value
    assert "program = 'Law''; DROP TABLE applications; --'" in statement
    assert "status = 'completed'" in statement
    assert '"submitted_at" >= ' in statement and '"submitted_at" < ' in statement
    assert query.columns == APPLICATION_COLUMNS


def test_payments_ignore_the_program_and_dead_letters_only_read_the_time() -> None:
    filters = ReportFilters(program="Law", status="failed", created_from=NOW)
    payments = text(report_query("payments", filters, ReportSources()).select)
    assert "program" not in payments and "status = 'failed'" in payments
    dead = text(report_query("dead_letters", filters, ReportSources()).select)
    assert "'failed'" not in dead and '"at" >= ' in dead
    assert dead.count("UNION ALL") == 3  # the four services' logs


@pytest.mark.parametrize(
    ("audience", "where"),
    [
        (Audience(), "WHERE true"),
        (Audience(kind="program", value="Law"), "WHERE program = 'Law'"),
        (Audience(kind="status", value="completed"), "WHERE status = 'completed'"),
    ],
)
def test_the_audience_is_a_distinct_list_of_addresses(audience: Audience, where: str) -> None:
    statement = text(audience_query("api", audience))
    assert statement.startswith('SELECT DISTINCT email FROM "api"."announcement_audience"')
    assert where in statement


@pytest.mark.parametrize(
    "audience", [{"kind": "program"}, {"kind": "status"}, {"kind": "all", "value": "x"}]
)
def test_an_audience_needs_a_value_exactly_when_it_filters(audience: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="audience"):
        Audience.model_validate(audience)


def test_a_delivery_id_depends_on_the_announcement_and_the_recipient_only() -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert delivery_message_id(first, "ada@example.org") == delivery_message_id(
        first, "Ada@Example.org"
    )
    assert delivery_message_id(first, "ada@example.org") != delivery_message_id(
        second, "ada@example.org"
    )
    assert delivery_message_id(first, "ada@example.org") != delivery_message_id(
        first, "bob@example.org"
    )


@pytest.mark.parametrize(
    ("status", "expires_at", "state"),
    [
        (None, None, "queued"),
        ("running", None, "running"),
        ("failed", None, "failed"),
        ("done", NOW + timedelta(seconds=1), "done"),
        ("done", NOW, "expired"),
    ],
)
def test_a_report_link_works_until_it_expires(
    status: str | None, expires_at: datetime | None, state: str
) -> None:
    assert report_state({"status": status, "expires_at": expires_at}, NOW) == state


@pytest.mark.parametrize(
    ("total", "settled", "cancelled_at", "state"),
    [
        (None, 0, None, "queued"),
        (None, 0, NOW, "cancelled"),
        (10, 3, None, "sending"),
        (10, 3, NOW, "cancelled"),  # the rest are being skipped
        (10, 10, NOW, "done"),
        (0, 0, None, "done"),  # nobody in the audience
    ],
)
def test_an_announcement_is_done_once_every_recipient_is_settled(
    total: int | None, settled: int, cancelled_at: datetime | None, state: str
) -> None:
    assert announcement_state(total, settled, cancelled_at) == state


def test_an_unsubscribe_token_opens_for_its_address_only() -> None:
    signer = UnsubscribeSigner.from_seal_setting("")
    token = signer.token("ada@example.org")
    assert signer.verify("ada@example.org", token)
    assert signer.verify("Ada@Example.org ", token)  # addresses are compared lower-cased
    assert not signer.verify("bob@example.org", token)
    other = UnsubscribeSigner.from_seal_setting("a2V5IGtleSBrZXkga2V5IGtleSBrZXkga2V5IGtleSE=")
    assert not other.verify("ada@example.org", token)
    assert "token=" + token in signer.url("http://portal.example/", "ada@example.org")

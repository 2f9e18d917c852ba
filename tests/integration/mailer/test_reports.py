"""Reports on the low lane against real Postgres: built from the API's view into the blob
store and mailed as a link, marked failed when they cannot be; their files kept by the blob
sweeper (which works as the API's role, through the mailer's ``report_status`` view) while
their link works, swept once it expired, and never kept past their run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.blob_references import referenced_in
from services.mailer.handler import Mailer, MailerTransaction
from services.mailer.rate_limit import LaneRate, MemoryRateLimiter
from services.mailer.rendering import template_environment
from services.mailer.report_queries import ReportSources
from services.mailer.reports import ReportBuilder
from services.mailer.retention import mailer_retention
from services.mailer.settings import MailerSettings
from services.mailer.smtp import MemorySender, SmtpUnavailable
from shared.blob_sweeper import BlobSweeper
from shared.blobs import BlobStore
from shared.consumer.runtime import MessageContext
from shared.db.transactions import PostgresTransactions
from shared.events.catalog import ReportFilters, ReportRequested
from shared.events.envelope import new_envelope
from shared.sweeper import Sweeper
from shared.system_topology import MAILER_LANES
from tests.support.database import open_role_pool
from tests.support.events import DEVELOPMENT_SEALER
from tests.support.infra import Infra

pytestmark = pytest.mark.integration
LOW = MAILER_LANES["low"]


@pytest.fixture
async def api_pool(infra: Infra, api_schema: str) -> AsyncIterator[AsyncConnectionPool]:
    async with open_role_pool(infra, api_schema) as pool:
        yield pool


async def test_a_report_file_is_kept_while_its_link_works(
    tmp_path: Path,
    mailer_pool: AsyncConnectionPool,
    mailer_schema: str,
    api_schema: str,
    api_pool: AsyncConnectionPool,
) -> None:
    # Given two report files, one whose link works for another hour, one expired a minute ago
    store = BlobStore(tmp_path / "blobs", fsync=False)
    linked, expired = store.put_bytes(b"a,b\n1,2\n"), store.put_bytes(b"a,b\n3,4\n")
    async with mailer_pool.connection() as conn:
        for blob, expires_in in ((linked, "1 hour"), (expired, "-1 minute")):
            await conn.execute(
                "INSERT INTO report_runs (report_id, status, sha256, expires_at)"
                " VALUES (gen_random_uuid(), 'done', %s, now() + %s::interval)",
                (blob.sha256, expires_in),
            )
    # When the sweeper runs past its grace period
    references = referenced_in(api_pool, api_schema, mailer_schema)
    sweeper = BlobSweeper(store.root, references, grace=timedelta(0))
    result = await sweeper.sweep_once()
    # Then the expired one is gone, the linked one stays
    assert result.blobs_removed == 1
    assert store.exists(linked.sha256)
    assert not store.exists(expired.sha256)


async def test_a_report_run_past_its_retention_is_swept_and_its_file_with_it(
    tmp_path: Path,
    mailer_pool: AsyncConnectionPool,
    mailer_schema: str,
    api_schema: str,
    api_pool: AsyncConnectionPool,
) -> None:
    # Given two reports built by the low lane, one whose link expired longer ago than the
    # retention (its run aged by hand), the other still downloadable
    await seed(api_pool, "Law", 3)
    blobs = BlobStore(tmp_path / "blobs", fsync=False)
    builder = builder_for(MemorySender(), mailer_pool, blobs, api_schema, mailer_schema)
    rules = mailer_retention(MailerSettings())
    [rule] = [rule for rule in rules if rule.table == "report_runs"]
    reports = {}
    for name, kind in (("old", "applications"), ("live", "dead_letters")):
        reports[name] = str(uuid.uuid4())
        payload = ReportRequested(report_id=reports[name], kind=kind, recipient="o@example.org")
        await run_report(builder, mailer_pool, mailer_schema, payload)
    files = {name: (await report_run(mailer_pool, rid))[2] for name, rid in reports.items()}
    async with mailer_pool.connection() as conn:
        await conn.execute(
            "UPDATE report_runs SET expires_at = now() - %s WHERE report_id = %s",
            (rule.keep + timedelta(hours=1), reports["old"]),
        )
    # When the mailer's sweeper runs, then the API's blob sweeper (past its grace period)
    swept = await Sweeper(mailer_pool, mailer_schema, rules=rules).sweep_once()
    references = referenced_in(api_pool, api_schema, mailer_schema)
    await BlobSweeper(blobs.root, references, grace=timedelta(0)).sweep_once()
    # Then the old report's run and file are gone; the live one's stay
    assert swept.retained_deleted["report_runs"] == 1
    async with mailer_pool.connection() as conn:
        left = await (await conn.execute("SELECT report_id::text FROM report_runs")).fetchall()
    assert left == [(reports["live"],)]
    assert not blobs.exists(files["old"])
    assert blobs.exists(files["live"])


async def run_report(
    builder: ReportBuilder, pool: AsyncConnectionPool, schema: str, payload: ReportRequested
) -> None:
    async with PostgresTransactions(pool, schema, MailerTransaction).begin() as tx:
        await builder.handle(MessageContext(new_envelope(payload), payload, 1, LOW, tx), payload)


def builder_for(
    sender: MemorySender, pool: AsyncConnectionPool, blobs: BlobStore, api: str, mailer: str
) -> ReportBuilder:
    mail = Mailer(
        templates=template_environment(),
        sender=sender,
        rate_limiter=MemoryRateLimiter({"low": LaneRate(refill_per_second=100.0, capacity=100.0)}),
        mail_from="Admissions <no-reply@admissions.local>",
        api_public_url="http://portal.example",
        sealer=DEVELOPMENT_SEALER,
    )
    sources = ReportSources(api=api, payments=api, dead_letter_logs=(mailer,))
    return ReportBuilder(mail, pool, blobs, sources, link_ttl=timedelta(hours=1))


async def seed(api_pool: AsyncConnectionPool, program: str, count: int) -> None:
    async with api_pool.connection() as conn:
        await conn.execute(
            "WITH u AS (INSERT INTO users (id, email, password_hash)"
            " SELECT gen_random_uuid(), %s || '-' || n || '@example.org', 'x'"
            " FROM generate_series(1, %s) n RETURNING id)"
            " INSERT INTO applications (id, applicant_id, program, personal_statement,"
            " correlation_id) SELECT gen_random_uuid(), id, %s, 's', 'c' FROM u",
            (program.lower(), count, program),
        )


async def report_run(pool: AsyncConnectionPool, report_id: str) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT status, rows_total, sha256, error FROM report_runs WHERE report_id = %s",
                (report_id,),
            )
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_a_report_is_built_from_the_view_and_mailed_as_a_link(
    tmp_path: Path,
    mailer_pool: AsyncConnectionPool,
    mailer_schema: str,
    api_schema: str,
    api_pool: AsyncConnectionPool,
) -> None:
    # Given 25 applications to a program, 5 to another
    await seed(api_pool, "Law", 25)
    await seed(api_pool, "Art", 5)
    sender, blobs = MemorySender(), BlobStore(tmp_path / "blobs", fsync=False)
    builder = builder_for(sender, mailer_pool, blobs, api_schema, mailer_schema)
    report_id = str(uuid.uuid4())
    payload = ReportRequested(
        report_id=report_id,
        kind="applications",
        filters=ReportFilters(program="Law"),
        recipient="ops@example.org",
    )
    # When the low lane builds it
    await run_report(builder, mailer_pool, mailer_schema, payload)
    # Then the file holds the program's rows, and its link went to the administrator
    status, rows, sha256, error = await report_run(mailer_pool, report_id)
    assert (status, rows, error) == ("done", 25, None)
    lines = blobs.read(sha256).decode().splitlines()
    assert lines[0].startswith("application_id,applicant_email,program,status")
    assert len(lines) == 26 and all(",Law," in line for line in lines[1:])
    [sent] = sender.sent
    mail = sent.parsed()
    assert mail["To"] == "ops@example.org"
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"http://portal.example/admin/reports/{report_id}/download" in body


async def test_a_report_whose_mail_cannot_go_is_marked_failed_not_left_running(
    tmp_path: Path,
    mailer_pool: AsyncConnectionPool,
    mailer_schema: str,
    api_schema: str,
) -> None:
    sender = MemorySender()
    sender.failure = SmtpUnavailable("mail server down")
    builder = builder_for(
        sender, mailer_pool, BlobStore(tmp_path / "b", fsync=False), api_schema, mailer_schema
    )
    report_id = str(uuid.uuid4())
    payload = ReportRequested(report_id=report_id, kind="dead_letters", recipient="o@example.org")
    with pytest.raises(SmtpUnavailable):
        await run_report(builder, mailer_pool, mailer_schema, payload)
    status, _, _, error = await report_run(mailer_pool, report_id)
    assert status == "failed"
    assert "SmtpUnavailable: mail server down" in error

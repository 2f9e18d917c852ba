"""Issue 14, item 11: every table that grows has a retention rule its service's sweeper applies.

For each service's tables (migrated as the service's own, in a throw-away schema), a row past
its retention and one within it: after one sweep with the service's rules built from its
default settings, only the young row is left, in every table. Blobs: ``test_blob_garbage.py``;
dead-letter queues: ``test_dead_letter_retention`` below and ``tests/unit/deploy``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from deploy.definitions.document import DEAD_LETTER_MAX_AGE
from services.api.retention import api_retention
from services.api.settings import ApiSettings
from services.mailer.retention import mailer_retention
from services.mailer.settings import MailerSettings
from services.payments.retention import payments_retention
from services.payments.settings import PaymentsSettings
from shared.retention import RetentionRule
from shared.sweeper import Sweeper
from shared.system_topology import SYSTEM_TOPOLOGY
from tests.support.broker_logins import BrokerLogins, management
from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

# A row of each table, its retention column "now() - %(age)s". Rows that reference a user or
# an application get one made by ``PARENTS`` first.
ROWS = {
    "idempotency_keys": "INSERT INTO idempotency_keys (applicant_id, key, fingerprint,"
    " application_id, response, created_at) VALUES (%(user)s, %(id)s, repeat('a', 64),"
    " gen_random_uuid(), '{}', now() - %(age)s)",
    "password_reset_tokens": "INSERT INTO password_reset_tokens (token_hash, user_id,"
    " expires_at) VALUES (%(id)s, %(user)s, now() - %(age)s)",
    "otp_codes": "INSERT INTO otp_codes (user_id, code_hash, expires_at)"
    " VALUES (%(user)s, %(id)s, now() - %(age)s)",
    "webhook_events": "INSERT INTO webhook_events (provider_event_id, application_id,"
    " payment_id, status, received_at) VALUES (%(id)s, %(application)s, 'p', 'paid',"
    " now() - %(age)s)",
    "replays": "INSERT INTO replays (requested_by, requested_at, queue, selector, dry_run,"
    " count, message_ids) VALUES (%(id)s, now() - %(age)s, 'q', '{}', true, 0, '{}')",
    "rate_limits": "INSERT INTO rate_limits (key, hits, window_ends)"
    " VALUES (%(id)s, 1, now() - %(age)s)",
    "login_failures": "INSERT INTO login_failures (key, failures, window_started)"
    " VALUES (%(id)s, 1, now() - %(age)s)",
    "sent_emails": "INSERT INTO sent_emails (message_id_header, template, recipient, lane,"
    " sent_at) VALUES (%(id)s, 't', 'a@example.org', 'medium', now() - %(age)s)",
    "early_webhooks": "INSERT INTO early_webhooks (provider_event_id, application_id, payload,"
    " received_at) VALUES (%(id)s, 'app', '{}', now() - %(age)s)",
    "reports": "INSERT INTO reports (id, kind, format, filters, requested_by, created_at)"
    " VALUES (%(id)s, 'applications', 'csv', '{}', 'admin@example.org', now() - %(age)s)",
    "announcements": "INSERT INTO announcements (id, subject, body, audience, created_by,"
    " created_at) VALUES (%(id)s, 's', 'b', '{}', 'admin@example.org', now() - %(age)s)",
    # Built three days before its link expired.
    "report_runs": "INSERT INTO report_runs (report_id, status, sha256, started_at, finished_at,"
    " expires_at) VALUES (%(id)s, 'done', repeat('a', 64), now() - %(age)s - interval '3 days',"
    " now() - %(age)s - interval '3 days', now() - %(age)s)",
    "announcement_runs": "INSERT INTO announcement_runs (announcement_id, total, expanded_at)"
    " VALUES (%(id)s, 1, now() - %(age)s)",
    "announcement_deliveries": "INSERT INTO announcement_deliveries (announcement_id, recipient,"
    " outcome, updated_at) VALUES (gen_random_uuid(), %(id)s, 'sent', now() - %(age)s)",
}
HALF_HOUR = timedelta(minutes=30)  # a young row of a zero retention lies in the future
PARENTS = """
INSERT INTO users (id, email, password_hash) VALUES (%(user)s, %(email)s, 'x');
INSERT INTO applications (id, applicant_id, program, personal_statement, correlation_id)
VALUES (%(application)s, %(user)s, 'p', 's', 'c');
"""


async def seed(
    pool: AsyncConnectionPool, rules: Sequence[RetentionRule], with_parents: bool
) -> dict[str, tuple[str, str]]:
    """Per table: the id of a row just past its retention and of one just within it."""
    user = str(uuid.uuid4())
    parents = {"user": user, "email": f"{user}@example.org", "application": str(uuid.uuid4())}
    seeded = {}
    async with pool.connection() as conn, conn.transaction():
        if with_parents:
            for statement in PARENTS.strip().split(";"):
                if statement.strip():
                    await conn.execute(statement, parents)
        for rule in rules:
            old, young = str(uuid.uuid4()), str(uuid.uuid4())
            for row_id, age in (
                (old, rule.keep + timedelta(hours=1)),
                (young, rule.keep / 2 - timedelta(minutes=30)),
            ):
                await conn.execute(ROWS[rule.table], {**parents, "id": row_id, "age": age})
            seeded[rule.table] = (old, young)
    return seeded


async def ids_left(pool: AsyncConnectionPool, table: str) -> set[str]:
    key = {
        "idempotency_keys": "key",
        "password_reset_tokens": "token_hash",
        "otp_codes": "code_hash",
        "webhook_events": "provider_event_id",
        "replays": "requested_by",
        "rate_limits": "key",
        "login_failures": "key",
        "sent_emails": "message_id_header",
        "early_webhooks": "provider_event_id",
        "reports": "id",
        "announcements": "id",
        "report_runs": "report_id",
        "announcement_runs": "announcement_id",
        "announcement_deliveries": "recipient",
    }[table]
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                sql.SQL("SELECT {}::text FROM {}").format(
                    sql.Identifier(key), sql.Identifier(table)
                )
            )
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.parametrize(
    ("service", "migrations", "rules"),
    [
        ("api", "services.api.migrations", api_retention(ApiSettings())),
        ("mailer", "services.mailer.migrations", mailer_retention(MailerSettings())),
        ("payments", "services.payments.migrations", payments_retention(PaymentsSettings())),
    ],
)
async def test_each_growing_table_loses_only_its_rows_past_their_retention(
    infra: Infra, namespace: str, service: str, migrations: str, rules: tuple[RetentionRule, ...]
) -> None:
    expected = {
        "api": {
            "idempotency_keys",
            "password_reset_tokens",
            "otp_codes",
            "webhook_events",
            "replays",
            "rate_limits",
            "login_failures",
            "reports",
            "announcements",
        },
        "mailer": {"sent_emails", "report_runs", "announcement_runs", "announcement_deliveries"},
        "payments": {"early_webhooks"},
    }[service]
    assert {rule.table for rule in rules} == expected
    async with (
        service_schema(infra, f"{namespace}_{service}", [migrations]) as schema,
        open_role_pool(infra, schema) as pool,
    ):
        # Given a row past its retention and one within it, in every table
        seeded = await seed(pool, rules, with_parents=service == "api")
        # When the service's sweeper runs once
        result = await Sweeper(pool, schema, rules=rules, batch_size=2).sweep_once()
        # Then each table lost exactly its old row
        assert result.ran
        assert result.retained_deleted == {table: 1 for table in expected}
        for table, (_old, young) in seeded.items():
            assert await ids_left(pool, table) == {young}, table


async def test_a_report_run_without_a_link_is_aged_from_its_end_or_its_start(
    infra: Infra, namespace: str
) -> None:
    rules = mailer_retention(MailerSettings())
    [rule] = [rule for rule in rules if rule.table == "report_runs"]
    async with (
        service_schema(infra, f"{namespace}_mailer", ["services.mailer.migrations"]) as schema,
        open_role_pool(infra, schema) as pool,
    ):
        # Given runs that never got a link: failed, or left running, long ago and recently
        ages = {"old": rule.keep + timedelta(hours=1), "young": rule.keep / 2}
        runs = {}
        async with pool.connection() as conn:
            for status, column in (("failed", "finished_at"), ("running", "started_at")):
                for age_name, age in ages.items():
                    run = runs[(status, age_name)] = str(uuid.uuid4())
                    await conn.execute(
                        sql.SQL(
                            "INSERT INTO report_runs (report_id, status, {}) VALUES (%s, %s,"
                            " now() - %s)"
                        ).format(sql.Identifier(column)),
                        (run, status, age),
                    )
        # When the mailer's sweeper runs once
        await Sweeper(pool, schema, rules=[rule]).sweep_once()
        # Then the old ones are gone, by the time they failed or started
        assert await ids_left(pool, "report_runs") == {
            runs[("failed", "young")],
            runs[("running", "young")],
        }


def test_the_api_forgets_a_report_or_an_announcement_no_later_than_the_mailer() -> None:
    # Given both services' rules from the same settings (the API ages its rows from the
    # request, the mailer from later moments: the link's end, the expansion, each mail)
    api = {rule.table: rule for rule in api_retention(ApiSettings())}
    mailer = {rule.table: rule for rule in mailer_retention(MailerSettings())}
    # Then the API's side is never kept longer: no status shows progress that is gone
    assert api["reports"].keep == mailer["report_runs"].keep
    assert api["announcements"].keep == mailer["announcement_runs"].keep
    assert api["announcements"].keep == mailer["announcement_deliveries"].keep
    # And a report's request outlives its download link
    assert api["reports"].keep > timedelta(hours=MailerSettings().report_link_ttl_hours)


async def test_dead_letter_queues_keep_messages_for_a_bounded_age_operators_see(
    infra: Infra, broker_logins: BrokerLogins
) -> None:
    # Given the definitions loaded into a broker (as operators and make run load them)
    base, auth = management(infra)
    vhost = quote(broker_logins.vhost, safe="")
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        for spec in SYSTEM_TOPOLOGY.queues:
            # Then each dead-letter queue shows a policy that drops messages past the age
            url = f"{base}/api/queues/{vhost}/{spec.name}.dlq"

            async def policy_shown(url: str = url) -> bool:
                return "policy" in (await client.get(url)).json()

            await eventually(policy_shown, timeout=15, what=f"{spec.name}.dlq's policy")
            found = (await client.get(url)).json()
            assert found["policy"] == "dead-letter-queues-max-age", spec.name
            ttl = found["effective_policy_definition"]["message-ttl"]
            assert ttl == DEAD_LETTER_MAX_AGE.total_seconds() * 1000
            # and its work queue keeps its own bound
            work = (await client.get(f"{base}/api/queues/{vhost}/{spec.name}")).json()
            assert "message-ttl" not in work["effective_policy_definition"]

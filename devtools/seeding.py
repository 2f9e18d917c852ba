"""Many applicants at once, straight into the API's tables: for the tests and benchmarks of
reports and announcements, where what is measured is reading them, not admitting them."""

from __future__ import annotations

import uuid

import psycopg

_SEED = """
WITH applicants AS (
    INSERT INTO api.users (id, email, password_hash, role)
    SELECT gen_random_uuid(), format('%%s-%%s@example.org', %(tag)s::text, n), 'seeded',
           'applicant'
    FROM generate_series(1, %(count)s) AS n
    RETURNING id
)
INSERT INTO api.applications
    (id, applicant_id, program, personal_statement, status, progress, correlation_id)
SELECT gen_random_uuid(), id, %(program)s, 'seeded', %(status)s, 100, 'seeded'
FROM applicants
"""


async def seed_applicants(
    database_url: str, count: int, program: str, status: str = "completed"
) -> str:
    """``count`` applicants with one application each to ``program``, in one statement; their
    addresses are ``<tag>-<n>@example.org`` (n from 1), the tag returned. ``database_url``
    logs in as a role that may write the ``api`` schema (the administrator)."""
    tag = f"seed{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            _SEED, {"tag": tag, "count": count, "program": program, "status": status}
        )
    return tag

"""The benchmark's pgbench script is the API's accept statement, and the server takes it."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from bench.pg_limit import accept_script
from tests.integration.api.conftest import Applicant, scalar


async def test_each_run_of_the_script_accepts_one_application(
    alice: Applicant, db: AsyncConnectionPool
) -> None:
    applicant_id = await scalar(db, "SELECT id::text FROM users WHERE email = %s", alice.email)
    script = accept_script(applicant_id)
    async with db.connection() as conn:
        for _ in range(2):  # fresh keys and ids each time, as in pgbench's loop
            await conn.execute(script.strip().rstrip(";"))
    count = "SELECT count(*) FROM {} WHERE {}"
    assert await scalar(db, count.format("applications", "applicant_id = %s"), applicant_id) == 2
    assert await scalar(db, count.format("outbox", "type = 'application.submitted'")) == 2

"""Report files in the blob store: kept by the blob sweeper (which works as the API's role,
through the mailer's ``report_status`` view) while their link works, swept once it expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.blob_references import referenced_in
from shared.blob_sweeper import BlobSweeper
from shared.blobs import BlobStore
from shared.db.migrate import READ_ONLY_VIEWS
from shared.db.migrations import grant_select
from tests.support.database import open_role_pool, service_schema
from tests.support.infra import Infra

pytestmark = pytest.mark.integration


@pytest.fixture
async def api_pool(
    infra: Infra, mailer_schema: str
) -> AsyncIterator[tuple[str, AsyncConnectionPool]]:
    """The API's role and schema, granted what the mailer publishes for it."""
    async with service_schema(infra, f"{mailer_schema}api", ["services.api.migrations"]) as api:
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            views = [
                view
                for owner, view, reader in READ_ONLY_VIEWS
                if (owner, reader) == ("mailer", "api")
            ]
            await grant_select(admin, api, mailer_schema, views)
        async with open_role_pool(infra, api) as pool:
            yield api, pool


async def test_a_report_file_is_kept_while_its_link_works(
    tmp_path: Path,
    mailer_pool: AsyncConnectionPool,
    mailer_schema: str,
    api_pool: tuple[str, AsyncConnectionPool],
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
    api, pool = api_pool
    # When the sweeper runs past its grace period
    sweeper = BlobSweeper(store.root, referenced_in(pool, api, mailer_schema), grace=timedelta(0))
    result = await sweeper.sweep_once()
    # Then the expired one is gone, the linked one stays
    assert result.blobs_removed == 1
    assert store.exists(linked.sha256)
    assert not store.exists(expired.sha256)

"""Report files in the blob store: kept by the blob sweeper (which works as the API's role,
through the mailer's ``report_status`` view) while their link works, swept once it expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.blob_references import referenced_in
from shared.blob_sweeper import BlobSweeper
from shared.blobs import BlobStore
from tests.support.database import open_role_pool
from tests.support.infra import Infra

pytestmark = pytest.mark.integration


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

"""Issue 14, item 3: the disk fills for good.

Blobs are written before the transaction that references them, so a refused submission leaves
its files behind, and a process killed mid-upload leaves its temporary file. The projector's
blob sweeper (``shared.blob_sweeper``, asking the API's rows what they reference) removes both
once they are older than the grace period, and never a blob a row references.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from services.api.blob_references import referenced_in
from services.api.settings import ApiSettings
from shared.blob_sweeper import BlobSweeper
from shared.blobs import BlobStore
from tests.integration.api.conftest import Applicant, scalar
from tests.security.test_uploads import MIB, files_under, submit
from tests.unit.api.multipart import PDF, FilePart

pytestmark = pytest.mark.integration


def sweeper(settings: ApiSettings, db: AsyncConnectionPool, grace: timedelta) -> BlobSweeper:
    return BlobSweeper(settings.blob_dir, referenced_in(db, settings.db_role), grace=grace)


def big_pdf(n: int) -> FilePart:
    return FilePart(f"big{n}.pdf", PDF + bytes([n]) * (10 * MIB - len(PDF) - 1))


async def test_a_422_after_five_10_mib_files_leaves_no_file_once_the_sweeper_has_run(
    client: httpx.AsyncClient,
    alice: Applicant,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    # Given a submission refused after five 10 MiB files reached the store (a sixth is too many)
    files = [big_pdf(n) for n in range(5)] + [FilePart("one-too-many.pdf", PDF)]
    response = await submit(client, alice, files)
    assert response.status_code == 422
    assert await scalar(db, "SELECT count(*) FROM application_documents") == 0
    left = files_under(api_settings.blob_dir)
    assert len(left) == 5, "the refused files were stored before the refusal"
    # When the sweeper runs (grace period over)
    result = await sweeper(api_settings, db, timedelta(0)).sweep_once()
    # Then nothing is left behind
    assert files_under(api_settings.blob_dir) == []
    assert result.blobs_removed == 5 and result.bytes_removed == 5 * (10 * MIB - 1)


async def test_the_sweeper_keeps_every_blob_a_row_references_and_young_orphans(
    client: httpx.AsyncClient,
    alice: Applicant,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    # Given an accepted submission, and an orphan written a moment ago
    files = [FilePart(f"doc{n}.pdf", PDF + bytes([n])) for n in range(3)]
    assert (await submit(client, alice, files)).status_code == 202
    accepted = set(files_under(api_settings.blob_dir))
    assert len(accepted) == 3
    young = BlobStore(api_settings.blob_dir, fsync=False).put_bytes(b"written just now")
    # When the sweeper runs with no grace, then with an hour's grace
    await sweeper(api_settings, db, timedelta(0)).sweep_once()
    # Then the referenced blobs stay
    assert accepted <= set(files_under(api_settings.blob_dir))
    assert young.sha256 not in {path.name for path in files_under(api_settings.blob_dir)}
    orphan = BlobStore(api_settings.blob_dir, fsync=False).put_bytes(b"young orphan")
    await sweeper(api_settings, db, timedelta(hours=1)).sweep_once()
    assert orphan.sha256 in {path.name for path in files_under(api_settings.blob_dir)}


async def test_a_killed_uploads_temporary_file_is_removed_by_the_sweeper(
    db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # Given a temporary file an upload killed two hours ago left, and one being written now
    folder = api_settings.blob_dir / "ab" / "cd"
    folder.mkdir(parents=True)
    killed = folder / ".upload-0123456789abcdef0123456789abcdef"
    killed.write_bytes(b"%PDF-1.7 half a document")
    two_hours_ago = time.time() - 7200
    os.utime(killed, (two_hours_ago, two_hours_ago))
    live = folder / ".upload-fedcba9876543210fedcba9876543210"
    live.write_bytes(b"%PDF-1.7 arriving")
    # When the sweeper runs with its default grace period (an hour)
    result = await sweeper(api_settings, db, timedelta(hours=1)).sweep_once()
    # Then the killed upload's file is gone, the live one stays
    assert not killed.exists()
    assert live.exists()
    assert result.temp_files_removed == 1


def test_reusing_stored_content_restarts_its_grace_period(tmp_path: object) -> None:
    from pathlib import Path

    store = BlobStore(Path(str(tmp_path)), fsync=False)
    ref = store.put_bytes(b"same bytes")
    path = store.path(ref.sha256)
    os.utime(path, (1, 1))
    staged = store.stage(b"same bytes")
    assert staged.fd is None  # not written again
    assert path.stat().st_mtime > time.time() - 60

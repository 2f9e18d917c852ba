"""Issue 14, item 3: the disk fills for good.

Blobs are written before the transaction that references them, so a submission whose write
fails after its files were published leaves them behind, and a process killed mid-upload leaves
its temporary file (a refused submission drops its own files). The projector's
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


async def test_a_422_after_five_10_mib_files_leaves_no_file(
    client: httpx.AsyncClient,
    alice: Applicant,
    db: AsyncConnectionPool,
    api_settings: ApiSettings,
) -> None:
    # Given a submission refused after five 10 MiB files arrived (a sixth is too many)
    files = [big_pdf(n) for n in range(5)] + [FilePart("one-too-many.pdf", PDF)]
    response = await submit(client, alice, files)
    assert response.status_code == 422
    assert await scalar(db, "SELECT count(*) FROM application_documents") == 0
    # Then nothing is left behind: the accept path publishes blobs only once the whole
    # submission is valid, and drops the drafts of a refused one itself
    assert files_under(api_settings.blob_dir) == []
    # and the sweeper (grace period over) has nothing to remove
    result = await sweeper(api_settings, db, timedelta(0)).sweep_once()
    assert result.blobs_removed == 0 and result.temp_files_removed == 0


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
    # Given temporary files uploads killed two hours ago left (in the flat store's root, and in
    # a fan-out folder of an earlier version), and one being written now
    legacy = api_settings.blob_dir / "ab" / "cd"
    legacy.mkdir(parents=True)
    killed = [
        api_settings.blob_dir / ".upload-0123456789abcdef0123456789abcdef",
        legacy / ".upload-00112233445566778899aabbccddeeff",
    ]
    two_hours_ago = time.time() - 7200
    for path in killed:
        path.write_bytes(b"%PDF-1.7 half a document")
        os.utime(path, (two_hours_ago, two_hours_ago))
    live = api_settings.blob_dir / ".upload-fedcba9876543210fedcba9876543210"
    live.write_bytes(b"%PDF-1.7 arriving")
    # When the sweeper runs with its default grace period (an hour)
    result = await sweeper(api_settings, db, timedelta(hours=1)).sweep_once()
    # Then the killed uploads' files are gone, the live one stays
    assert not any(path.exists() for path in killed)
    assert live.exists()
    assert result.temp_files_removed == 2


async def test_the_sweeper_removes_old_orphans_in_the_flat_layout_and_earlier_fan_out_folders(
    db: AsyncConnectionPool, api_settings: ApiSettings
) -> None:
    # Given an orphan blob in the flat layout and one where an earlier version fanned it out
    store = BlobStore(api_settings.blob_dir, fsync=False)
    flat = store.path(store.put_bytes(b"flat orphan").sha256)
    sha = store.put_bytes(b"fanned-out orphan").sha256
    fanned = api_settings.blob_dir / sha[:2] / sha[2:4] / sha
    fanned.parent.mkdir(parents=True)
    store.path(sha).rename(fanned)
    assert store.locate(sha) == fanned
    two_hours_ago = time.time() - 7200
    for path in (flat, fanned):
        os.utime(path, (two_hours_ago, two_hours_ago))
    # When the sweeper runs
    result = await sweeper(api_settings, db, timedelta(hours=1)).sweep_once()
    # Then both are gone
    assert not flat.exists() and not fanned.exists()
    assert result.blobs_removed == 2


def test_reusing_stored_content_restarts_its_grace_period(tmp_path: object) -> None:
    from pathlib import Path

    store = BlobStore(Path(str(tmp_path)), fsync=False)
    ref = store.put_bytes(b"same bytes")
    path = store.path(ref.sha256)
    os.utime(path, (1, 1))
    staged = store.stage(b"same bytes")
    assert staged.fd is None  # not written again
    assert path.stat().st_mtime > time.time() - 60

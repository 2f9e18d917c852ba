"""The blob store: content-addressed, durable before it is visible, nothing half-written."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from shared.blobs import BlobPublisher, BlobRef, BlobStore


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def files_under(store: BlobStore) -> list[str]:
    return sorted(p.name for p in store.root.rglob("*") if p.is_file())


def test_a_staged_blob_is_written_only_when_published(store: BlobStore) -> None:
    staged = store.stage(b"%PDF-1.7 transcript")
    sha = hashlib.sha256(b"%PDF-1.7 transcript").hexdigest()

    assert staged.ref.sha256 == sha and staged.ref.size == 19
    assert files_under(store) == []  # hashed in memory: no file system write on the caller

    store.publish([staged])

    assert store.read(sha) == b"%PDF-1.7 transcript"
    assert files_under(store) == [sha]
    assert store.path(sha).parent == store.root  # flat: one folder to sync


def test_a_draft_is_visible_only_once_published(store: BlobStore) -> None:
    draft = store.draft()
    draft.write(b"%PDF-1.7 ")
    draft.write(b"transcript")
    staged = draft.seal()
    sha = hashlib.sha256(b"%PDF-1.7 transcript").hexdigest()

    assert staged.ref == BlobRef(sha, 19)
    assert not store.exists(sha)  # only a dot-named temporary file so far
    assert [name.startswith(".upload-") for name in files_under(store)] == [True]

    store.publish([staged])

    assert store.read(sha) == b"%PDF-1.7 transcript"
    assert files_under(store) == [sha]


def test_a_published_blob_and_its_folder_are_synced_before_publish_returns(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    staged = store.stage(b"%PDF-1.7 transcript")
    store.publish([staged])

    # The file's data (under its temporary name), then the folder holding its final name.
    assert [os.path.basename(p).startswith(".upload-") for p in synced] == [True, False]
    assert synced[1] == str(store.path(staged.ref.sha256).parent)


def test_content_the_store_holds_is_not_written_again(store: BlobStore) -> None:
    first = store.put_bytes(b"same bytes")
    again = store.stage(b"same bytes")

    assert again.ref == first
    assert not again.pending and files_under(store) == [first.sha256]
    store.publish([again])  # nothing to do, nothing breaks
    assert files_under(store) == [first.sha256]


def test_discarded_blobs_leave_nothing(store: BlobStore) -> None:
    staged = [store.stage(b"one"), store.stage(b"two")]

    store.discard(staged)

    assert files_under(store) == []
    assert not any(blob.pending for blob in staged)


def test_when_syncing_fails_no_blob_of_the_request_is_published(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = [store.stage(b"one"), store.stage(b"two")]

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        store.publish(staged)

    assert files_under(store) == []


def test_a_streamed_put_hashes_and_places_its_content(store: BlobStore) -> None:
    import io

    data = os.urandom(3 * 1024 * 1024 + 5)
    ref = store.put(io.BytesIO(data), max_bytes=len(data))

    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert store.read(ref.sha256) == data
    assert files_under(store) == [ref.sha256]


async def test_the_publisher_thread_publishes_what_several_requests_hand_it(
    store: BlobStore,
) -> None:
    publisher = BlobPublisher(store)
    requests = [[store.stage(f"request {n} file {f}".encode()) for f in range(2)] for n in range(5)]
    try:
        await asyncio.gather(*(publisher.publish(staged) for staged in requests))
    finally:
        publisher.close()

    expected = sorted(blob.ref.sha256 for staged in requests for blob in staged)
    assert files_under(store) == expected


async def test_when_the_publisher_fails_every_request_waiting_gets_the_error(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    publisher = BlobPublisher(store)
    requests = [[store.stage(f"request {n}".encode())] for n in range(3)]
    try:
        outcomes = await asyncio.gather(
            *(publisher.publish(staged) for staged in requests), return_exceptions=True
        )
    finally:
        publisher.close()

    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    assert files_under(store) == []


def test_a_blob_an_earlier_version_fanned_out_is_still_found(store: BlobStore) -> None:
    sha = hashlib.sha256(b"old").hexdigest()
    legacy = store.root / sha[:2] / sha[2:4] / sha
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")

    assert store.exists(sha) and store.read(sha) == b"old"
    assert store.locate(sha) == legacy


def test_a_batch_syncs_its_folder_once(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store.publish([store.stage(f"file {n}".encode()) for n in range(4)])

    assert synced.count(str(store.root)) == 1 and len(synced) == 5

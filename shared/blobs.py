"""The content-addressed blob store for uploaded documents (claim-check pattern).

Messages carry a document's SHA-256, never its bytes. A blob is durable before the
transaction that references it commits (the file and then its folder are fsynced), so a
committed row never points at nothing; the same content always lands on the same path, so a
retried upload is harmless, and content the store already holds is not written again (its time
is refreshed instead, so the sweeper's grace period starts again). Blobs no row references, and
temporary files an upload left behind, are removed after a grace period
(``shared.blob_sweeper``).

Two ways in, both ending in ``publish``, which writes what is still in memory, fsyncs, and
puts in place every blob of a request (or of several requests) in one blocking call: call it
from a thread (``BlobPublisher`` runs one). It renames every file before it syncs any folder,
so one journal commit makes all of a batch's renames durable.

- ``stage(data)`` for content in memory (most documents are small): hashed at once, nothing
  written yet. No file system call but a ``utime`` on the caller's thread, which matters on an
  event loop: creating a file waits for the journal whenever another thread is syncing.
- ``BlobDraft`` for a large file, hashed and written (unsynced, under a dot-named temporary
  name) as its bytes arrive, then ``seal``-ed.

Layout: flat, ``<root>/<sha256>``, temporary files beside them. A rename is durable only
once its folder is synced, and one folder means one folder sync per batch, where fan-out
folders cost one per file (two per submission: they were a fifth of the accept path's system
calls). Directories indexed by hash (ext4's default) look a name up as fast among millions.
Blobs an earlier version stored under ``<root>/<aa>/<bb>/<sha256>`` are still found
(``locate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

CHUNK = 1024 * 1024
# Temporary files are dot-prefixed: never mistaken for a blob (their names are 64 hex digits).
TEMP_PREFIX = ".upload-"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class BlobTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int


@dataclass
class StagedBlob:
    """Content hashed, not yet durable nor in its place: still in memory (``data``), or written
    to a temporary file (``fd``). Neither when the store already held this content: nothing is
    left to do."""

    ref: BlobRef
    final: str
    temp: str = ""
    fd: int | None = None
    data: bytes | None = None

    @property
    def pending(self) -> bool:
        return self.fd is not None or self.data is not None


class BlobDraft:
    """A file on its way in, written and hashed as its bytes arrive. ``seal`` when the last
    byte is in, ``discard`` if it will never be complete."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._hash = hashlib.sha256()
        self.size = 0
        self.temp = store.temp_name()
        self._fd: int | None = os.open(self.temp, _NEW_FILE, 0o644)

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("the draft is sealed or discarded")
        self._hash.update(data)
        _write_all(self._fd, data)
        self.size += len(data)

    def seal(self) -> StagedBlob:
        if self._fd is None:
            raise ValueError("the draft is sealed or discarded")
        fd, self._fd = self._fd, None
        ref = BlobRef(self._hash.hexdigest(), self.size)
        final = self._store.final_name(ref.sha256)
        if _refresh(final):
            _discard(fd, self.temp)
            return StagedBlob(ref, final)
        return StagedBlob(ref, final, self.temp, fd)

    def discard(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _discard(fd, self.temp)


class BlobStore:
    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        # Folders known to exist: a new blob does not ask the file system again.
        self._folders: set[str] = set()

    def path(self, sha256: str) -> Path:
        if not is_blob_name(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256

    def locate(self, sha256: str) -> Path:
        """Where the blob is: its path, or where an earlier version's fan-out put it."""
        path = self.path(sha256)
        if not path.exists():
            legacy = self.root / sha256[:2] / sha256[2:4] / sha256
            if legacy.exists():
                return legacy
        return path

    def draft(self) -> BlobDraft:
        return BlobDraft(self)

    def stage(self, data: bytes) -> StagedBlob:
        """Content in memory, hashed; ``publish`` writes it (or ``discard`` forgets it)."""
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        final = self.final_name(ref.sha256)
        if _refresh(final):
            return StagedBlob(ref, final)
        return StagedBlob(ref, final, data=data)

    def put(self, source: BinaryIO, max_bytes: int) -> BlobRef:
        """Copy ``source`` into the store, hashing as it goes; ``BlobTooLarge`` past the
        limit. Blocking file I/O: call it from a worker thread in async code."""
        draft = self.draft()
        try:
            while chunk := source.read(CHUNK):
                if draft.size + len(chunk) > max_bytes:
                    raise BlobTooLarge(max_bytes)
                draft.write(chunk)
        except BaseException:
            draft.discard()
            raise
        staged = draft.seal()
        self.publish([staged])
        return staged.ref

    def put_bytes(self, data: bytes) -> BlobRef:
        staged = self.stage(data)
        self.publish([staged])
        return staged.ref

    def publish(self, staged: Iterable[StagedBlob]) -> None:
        """Make staged blobs durable and put them in their place: each file is written if it
        is still in memory and synced; then all are renamed; then each folder that gained one
        is synced (a rename is durable only then). Blocking. If one fails, the ones not yet in
        place are dropped."""
        pending = [blob for blob in staged if blob.pending]
        try:
            for blob in pending:
                if blob.data is not None:
                    blob.temp, blob.fd = self._write_temp(blob.data)
                    blob.data = None
                if self.fsync:
                    os.fsync(cast(int, blob.fd))
            for blob in pending:
                fd, blob.fd = cast(int, blob.fd), None
                os.close(fd)
                os.replace(blob.temp, blob.final)
        except BaseException:
            self.discard(pending)
            raise
        if self.fsync:
            for folder in {os.path.dirname(blob.final) for blob in pending}:
                _sync_folder(folder)

    def discard(self, staged: Iterable[StagedBlob]) -> None:
        """Drop staged blobs that will not be published (the request failed)."""
        for blob in staged:
            blob.data = None
            if blob.fd is not None:
                fd, blob.fd = blob.fd, None
                _discard(fd, blob.temp)

    def read(self, sha256: str) -> bytes:
        return self.locate(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.locate(sha256).is_file()

    def final_name(self, sha256: str) -> str:
        """Where the blob lives, its folder created if need be."""
        final = str(self.path(sha256))
        self._ensure_folder(os.path.dirname(final))
        return final

    def _write_temp(self, data: bytes) -> tuple[str, int]:
        temp = self.temp_name()
        fd = os.open(temp, _NEW_FILE, 0o644)
        try:
            _write_all(fd, data)
        except BaseException:
            _discard(fd, temp)
            raise
        return temp, fd

    def temp_name(self) -> str:
        # Dot-prefixed: never mistaken for a blob (their names are 64 hex digits).
        root = str(self.root)
        self._ensure_folder(root)
        return os.path.join(root, f"{TEMP_PREFIX}{uuid.uuid4().hex}")

    def _ensure_folder(self, folder: str) -> None:
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)


class BlobPublisher:
    """Threads that publish the blobs the event loop hands them, for every request of the
    process: what waits when a thread comes round is published in one ``publish`` call (one
    folder sync for the whole batch). A hand-off is a queue put and, at the end, one wake-up of
    the loop, and no thread is ever held by a client (only complete files are handed off).
    Once handed off, the blobs are the threads': a request cancelled meanwhile leaves them to
    them. If a batch fails (the disk is full, say), every request in it gets the error.

    How many threads is a trade (``BLOB_SYNC_THREADS``), measured here with strace at 100
    submissions/s: one thread makes the largest batches and the fewest system calls (31 futex
    calls and 2.1 fsyncs per submission; four threads: 80 and 3.0), but syncs one file at a
    time: ~1,000 20 KiB files/s on this disk, where four threads sync ~2,200 together. One is
    the default: the CPU, not the disk, bounds a process (~300 submissions/s) here; a slow or
    shared disk wants more."""

    def __init__(self, store: BlobStore, threads: int = 1) -> None:
        self._store = store
        self._work: queue.SimpleQueue[
            tuple[list[StagedBlob], asyncio.Future[None], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"blob-publisher-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def publish(self, staged: list[StagedBlob]) -> None:
        if not any(blob.pending for blob in staged):
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._work.put((staged, done, loop))
        await done

    def close(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while (first := self._work.get()) is not None:
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while (item := self._work.get_nowait()) is not None:
                    batch.append(item)
                else:
                    # Closing: the stop goes back for whichever thread takes it next.
                    self._work.put(None)
            error: BaseException | None = None
            try:
                self._store.publish(blob for staged, _, _ in batch for blob in staged)
            except BaseException as failed:  # each request reports it
                error = failed
            for _, done, loop in batch:
                loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the request was cancelled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def is_blob_name(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _refresh(final: str) -> bool:
    """Whether the store holds ``final``; if so its time becomes now, so that the sweeper
    does not take content a new request is about to reference for an orphan."""
    try:
        os.utime(final)
    except FileNotFoundError:
        return False
    return True


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(fd: int, temp: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(temp)

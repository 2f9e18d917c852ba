"""The content-addressed blob store for uploaded documents (claim-check pattern).

Messages carry a document's SHA-256, never its bytes. A blob is written (and fsynced) before
the transaction that references it commits, so a committed row never points at nothing; the
same content always lands on the same path, so a retried upload is harmless, and content the
store already holds is not written again (its time is refreshed instead, so the sweeper's grace
period starts again). Blobs no row references, and temporary files an upload left behind, are
removed after a grace period (``shared.blob_sweeper``).

Two ways in:

- ``put`` streams a file of any size (blocking: call it from a worker thread);
- ``stage`` + ``publish`` for content already in memory (most documents are small): ``stage``
  hashes it and writes a temporary file without syncing, quick enough for the event loop;
  ``publish`` fsyncs and renames every staged blob of a request in one blocking call, one
  worker-thread hop per request instead of one per file. Each hop costs the event loop
  futex wake-ups and the GIL hand-overs of a thread doing Python work, so the thread's part is
  kept to the ``os`` calls that wait on the disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
    """Content hashed and written to a temporary file, not yet synced nor in its place.
    ``fd`` is None when the store already held this content: nothing is left to do."""

    ref: BlobRef
    final: str
    temp: str = ""
    fd: int | None = None


class BlobStore:
    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        # Fan-out folders known to exist: a put does not ask the file system again.
        self._folders: set[str] = set()

    def path(self, sha256: str) -> Path:
        if not is_blob_name(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, source: BinaryIO, max_bytes: int) -> BlobRef:
        """Copy ``source`` into the store, hashing as it goes; ``BlobTooLarge`` past the limit.

        Blocking file I/O: call it from a worker thread in async code.
        """
        temp = self._temp_name(self.root)
        fd = os.open(temp, _NEW_FILE, 0o644)
        try:
            digest = hashlib.sha256()
            size = 0
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                digest.update(chunk)
                _write_all(fd, chunk)
        except BaseException:
            _discard(fd, temp)
            raise
        ref = BlobRef(digest.hexdigest(), size)
        self.publish([StagedBlob(ref, self._final_name(ref.sha256), temp, fd)])
        return ref

    def put_bytes(self, data: bytes) -> BlobRef:
        staged = self.stage(data)
        self.publish([staged])
        return staged.ref

    def stage(self, data: bytes) -> StagedBlob:
        """Hash ``data`` and write it to a temporary file beside its final place, unsynced.
        Follow with ``publish`` (or ``discard`` if the request fails)."""
        ref = BlobRef(hashlib.sha256(data).hexdigest(), len(data))
        final = self._final_name(ref.sha256)
        if _refresh(final):
            return StagedBlob(ref, final)
        temp = self._temp_name(os.path.dirname(final))
        fd = os.open(temp, _NEW_FILE, 0o644)
        try:
            _write_all(fd, data)
        except BaseException:
            _discard(fd, temp)
            raise
        return StagedBlob(ref, final, temp, fd)

    def publish(self, staged: Iterable[StagedBlob]) -> None:
        """Make staged blobs durable and put them in their place. Blocking (a worker thread).
        If one fails, the ones not yet in place are dropped."""
        pending = [(blob, blob.fd) for blob in staged if blob.fd is not None]
        try:
            for blob, fd in pending:
                if self.fsync:
                    os.fsync(fd)
                blob.fd = None
                os.close(fd)
                os.replace(blob.temp, blob.final)
        except BaseException:
            self.discard(blob for blob, _ in pending)
            raise

    def discard(self, staged: Iterable[StagedBlob]) -> None:
        """Drop staged blobs that will not be published (the request failed)."""
        for blob in staged:
            if blob.fd is not None:
                fd, blob.fd = blob.fd, None
                _discard(fd, blob.temp)

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _final_name(self, sha256: str) -> str:
        final = str(self.path(sha256))
        folder = os.path.dirname(final)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return final

    def _temp_name(self, folder: Path | str) -> str:
        if str(folder) not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(str(folder))
        return os.path.join(folder, f"{TEMP_PREFIX}{uuid.uuid4().hex}")


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _discard(fd: int, temp: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(temp)

"""The content-addressed blob store for uploaded documents (claim-check pattern).

Messages carry a document's SHA-256, never its bytes. A blob is written (and fsynced) before
the transaction that references it commits, so a committed row never points at nothing; writing
the same content twice lands on the same path, so a retried upload is harmless. Blobs no row
references are removed after a grace period.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


class BlobTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int


class BlobStore:
    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, source: BinaryIO, max_bytes: int) -> BlobRef:
        """Copy ``source`` into the store, hashing as it goes; ``BlobTooLarge`` past the limit.

        Blocking file I/O: call it from a worker thread in async code.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".upload-", delete=False) as tmp:
            try:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge(max_bytes)
                    digest.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                if self.fsync:
                    os.fsync(tmp.fileno())
            except BaseException:
                os.unlink(tmp.name)
                raise
        ref = BlobRef(digest.hexdigest(), size)
        final = self.path(ref.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp.name, final)
        return ref

    def put_bytes(self, data: bytes) -> BlobRef:
        import io

        return self.put(io.BytesIO(data), max_bytes=len(data))

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

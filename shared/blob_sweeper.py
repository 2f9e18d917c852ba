"""Garbage collection of the blob store: blobs no row references, and abandoned temporary files.

A blob is written before the transaction that references it commits, so a refused submission
(a 422 after its files were stored), a request whose client went away, or a process killed
mid-upload leaves bytes behind that nothing will ever read. On the sweeper's cron schedule:

- a ``.upload-*`` temporary file older than the grace period is removed: a live upload writes
  its temporary file continuously, and a killed one never finishes it;
- a blob older than the grace period that no row references (``referenced`` asks the owner of
  the rows) is removed. The grace period covers the moment between a blob's write and the commit
  of its row; the store refreshes the time of content it already holds when a new request uses
  it again (``BlobStore.stage``), and the time is read again just before removal, so a blob
  reused meanwhile stays.

Removal is idempotent, so several replicas sweeping at once do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from shared.blobs import TEMP_PREFIX, is_blob_name
from shared.sweeper import next_run

log = structlog.get_logger("blob-sweeper")

# Which of these SHA-256 hex digests a row still references.
References = Callable[[Sequence[str]], Awaitable[set[str]]]
_QUERY_BATCH = 1000


@dataclass(frozen=True)
class BlobSweepResult:
    blobs_removed: int = 0
    bytes_removed: int = 0
    temp_files_removed: int = 0
    blobs_kept: int = 0


@dataclass(frozen=True)
class _Candidate:
    path: str
    sha256: str
    mtime: float
    size: int


class BlobSweeper:
    def __init__(
        self,
        root: Path,
        referenced: References,
        *,
        grace: timedelta = timedelta(hours=1),
        schedule: str = "*/15 * * * *",
    ) -> None:
        self.root = root
        self.referenced = referenced
        self.grace = grace
        self.schedule = schedule

    async def sweep_once(self) -> BlobSweepResult:
        cutoff = time.time() - self.grace.total_seconds()
        candidates, temps = await asyncio.to_thread(self._scan, cutoff)
        orphans: list[_Candidate] = []
        for start in range(0, len(candidates), _QUERY_BATCH):
            batch = candidates[start : start + _QUERY_BATCH]
            live = await self.referenced([c.sha256 for c in batch])
            orphans += [c for c in batch if c.sha256 not in live]
        removed = await asyncio.to_thread(_remove_unchanged, orphans)
        result = BlobSweepResult(
            blobs_removed=len(removed),
            bytes_removed=sum(c.size for c in removed),
            temp_files_removed=temps,
            blobs_kept=len(candidates) - len(removed),
        )
        log.info("blobs swept", root=str(self.root), **vars(result))
        return result

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            delay = (next_run(self.schedule, now) - now).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return
            try:
                await self.sweep_once()
            except Exception as error:  # a failed sweep is tried again at the next tick
                log.warning("blob sweep failed", error=repr(error))

    def _scan(self, cutoff: float) -> tuple[list[_Candidate], int]:
        """Blobs older than ``cutoff``; temporary files older than it are removed here."""
        candidates: list[_Candidate] = []
        temps = 0
        for entry in _files(self.root):
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.st_mtime > cutoff:
                continue
            if entry.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    temps += 1
            elif is_blob_name(entry.name):
                candidates.append(_Candidate(entry.path, entry.name, stat.st_mtime, stat.st_size))
        return candidates, temps


def _files(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every regular file under ``root``: blobs and temporary files sit in the root itself, and
    blobs an earlier version stored two fan-out folders deep (``<aa>/<bb>/<sha256>``) too."""
    if not root.is_dir():
        return
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry


def _remove_unchanged(orphans: list[_Candidate]) -> list[_Candidate]:
    removed = []
    for orphan in orphans:
        try:
            if os.stat(orphan.path).st_mtime != orphan.mtime:
                continue  # used again since the scan: a new row may reference it
            os.unlink(orphan.path)
        except FileNotFoundError:
            continue
        removed.append(orphan)
    return removed

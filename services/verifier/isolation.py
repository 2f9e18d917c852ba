"""Running the checks in worker processes, so a hostile file cannot stall or crash the service.

Parsing untrusted PDFs and images is CPU-bound and can be made arbitrarily slow by a crafted
file. Two bounds apply:

- inside the worker, an interval timer (SIGALRM) interrupts the check after the per-file
  timeout: the file is rejected as "timed out" and the process stays usable;
- the parent gives each job that timeout plus a grace period; a job still running then is
  stuck where a signal cannot reach it (inside C code), so its worker is killed and replaced
  (``WorkerWedged``).

Each worker is a pool of one process of its own, so killing a stuck worker, or a worker that
dies under a file (a crash in a C parser), touches no other job: the files checked beside it
get their verdicts. A job whose worker died runs once more on a new one (the process may
have been killed from outside); if that one dies too, the file is at fault (``WorkerCrashed``).

Each worker also caps its own address space, so a decompression bomb ends in a MemoryError
there instead of the machine swapping.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import FrameType
from typing import TypeVar

import structlog

from services.verifier.document_rules import Limits, Verdict, check_document, check_size

log = structlog.get_logger("verifier.isolation")

T = TypeVar("T")

TIMED_OUT = "timed out"
CRASHED = "could not be checked: the file crashes the checker"


class CheckTimedOut(BaseException):
    """Raised by the worker's timer. A BaseException, so a parser's ``except Exception``
    cannot swallow it."""


class WorkerWedged(Exception):
    """A job outlived its timeout plus grace: the worker was killed and the pool replaced."""


class WorkerCrashed(Exception):
    """The job's worker died twice under it: the file kills its checker."""


# --- in the worker process -------------------------------------------------------------------


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise CheckTimedOut


def init_worker(memory_limit_bytes: int | None) -> None:
    # Ctrl-C in a terminal reaches the whole process group: only the parent decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    # pypdf logs every oddity of a damaged file; the verdict already says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))


def verify_blob_file(
    path: str,
    declared_type: str,
    expected_sha256: str,
    expected_size: int,
    limits: Limits,
    timeout: float,
) -> Verdict:
    """Read one stored blob and check it, within ``timeout`` seconds (runs in a worker)."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        blob = Path(path)
        if (too_large := check_size(blob.stat().st_size, limits)) is not None:
            return too_large
        data = blob.read_bytes()
        return check_document(data, declared_type, expected_sha256, expected_size, limits)
    except CheckTimedOut:
        return Verdict.reject(TIMED_OUT)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _ready() -> int:
    return os.getpid()


# --- in the service --------------------------------------------------------------------------


class CheckPool:
    """Worker processes that survive each other: ``run`` bounds each job and replaces the
    worker that is stuck or has died under it, and only that one."""

    def __init__(
        self, processes: int, memory_limit_bytes: int | None = None, grace: float = 5.0
    ) -> None:
        self.processes = processes
        self.memory_limit_bytes = memory_limit_bytes
        self.grace = grace
        # Idle workers; a job takes one for itself, so its deadline never runs while it
        # waits behind another job.
        self._idle: asyncio.Queue[ProcessPoolExecutor] = asyncio.Queue()
        self._workers = [self._new_worker() for _ in range(processes)]
        for worker in self._workers:
            self._idle.put_nowait(worker)
        self.replacements = 0

    def _new_worker(self) -> ProcessPoolExecutor:
        # spawn, not fork: the service has an event loop and open sockets a fork would copy.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.memory_limit_bytes,),
        )

    async def warm_up(self) -> None:
        """Start the workers now, so the first files do not pay for process start-up."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(w, _ready) for w in self._workers))

    async def run(self, function: Callable[..., T], *args: object, deadline: float) -> T:
        """``function(*args)`` in a worker; ``WorkerWedged`` after ``deadline + grace`` s,
        ``WorkerCrashed`` if its worker died twice."""
        worker = await self._idle.get()
        try:
            for attempt in (1, 2):
                future = worker.submit(function, *args)
                try:
                    return await asyncio.wait_for(
                        asyncio.wrap_future(future), deadline + self.grace
                    )
                except TimeoutError:
                    log.error("worker process wedged, replacing it", deadline=deadline)
                    worker = self._replace(worker)
                    raise WorkerWedged(f"no answer after {deadline + self.grace} s") from None
                except BrokenProcessPool:
                    log.warning("worker process died under a job, replacing it", attempt=attempt)
                    worker = self._replace(worker)
                except asyncio.CancelledError:
                    if not future.done():  # a job nobody waits for must not hold the worker
                        worker = self._replace(worker)
                    raise
            raise WorkerCrashed("the worker process died twice under this job")
        finally:
            self._idle.put_nowait(worker)

    def _replace(self, worker: ProcessPoolExecutor) -> ProcessPoolExecutor:
        self.replacements += 1
        fresh = self._new_worker()
        self._workers[self._workers.index(worker)] = fresh
        _kill_worker(worker)
        return fresh

    async def close(self) -> None:
        def shut_down() -> None:
            for worker in self._workers:
                worker.shutdown(wait=True, cancel_futures=True)

        await asyncio.to_thread(shut_down)


def _kill_worker(executor: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor cannot kill a running job before Python 3.14
    # (``terminate_workers``); its process table is the only handle on the stuck worker.
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        process.kill()
    executor.shutdown(wait=False, cancel_futures=True)

"""Running the checks in worker processes, so a hostile file cannot stall or crash the service.

Parsing untrusted PDFs and images is CPU-bound and can be made arbitrarily slow by a crafted
file. Two bounds apply:

- inside the worker, an interval timer (SIGALRM) interrupts the check after the per-file
  timeout: the file is rejected as "timed out" and the process stays usable;
- the parent gives each job that timeout plus a grace period; a job still running then is
  stuck where a signal cannot reach it (inside C code), so the whole pool is killed and
  replaced (``WorkerWedged``). Jobs of other files that the kill interrupted run once more on
  the new pool.

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
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import FrameType
from typing import TypeVar

import structlog

from services.verifier.document_rules import Limits, Verdict, check_document, check_size
from shared.errors import TransientError

log = structlog.get_logger("verifier.isolation")

T = TypeVar("T")

TIMED_OUT = "timed out"


class CheckTimedOut(BaseException):
    """Raised by the worker's timer. A BaseException, so a parser's ``except Exception``
    cannot swallow it."""


class WorkerWedged(Exception):
    """A job outlived its timeout plus grace: the worker was killed and the pool replaced."""


class CheckerUnavailable(TransientError):
    """The worker pool broke twice in a row under one job: try the message again later."""


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
    """A process pool that survives its workers: ``run`` bounds each job and replaces the
    pool when a worker is stuck or has died."""

    def __init__(
        self, processes: int, memory_limit_bytes: int | None = None, grace: float = 5.0
    ) -> None:
        self.processes = processes
        self.memory_limit_bytes = memory_limit_bytes
        self.grace = grace
        # At most one job per process: a job's deadline must not run while it waits for a slot.
        self._slots = asyncio.Semaphore(processes)
        self._executor = self._new_executor()
        self.replacements = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: the service has an event loop and open sockets a fork would copy.
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self.memory_limit_bytes,),
        )

    async def warm_up(self) -> None:
        """Start the workers now, so the first files do not pay for process start-up."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ready) for _ in range(self.processes))
        )

    async def run(self, function: Callable[..., T], *args: object, deadline: float) -> T:
        """``function(*args)`` in a worker; ``WorkerWedged`` after ``deadline + grace`` s."""
        async with self._slots:
            for attempt in (1, 2):
                executor = self._executor
                try:
                    future = executor.submit(function, *args)
                    return await asyncio.wait_for(
                        asyncio.wrap_future(future), deadline + self.grace
                    )
                except TimeoutError:
                    log.error("worker process wedged, replacing the pool", deadline=deadline)
                    self._replace(executor)
                    raise WorkerWedged(f"no answer after {deadline + self.grace} s") from None
                except BrokenProcessPool:
                    # Another job's worker was killed or died: this job was not at fault.
                    log.warning("worker pool broken, replacing it", attempt=attempt)
                    self._replace(executor)
            raise CheckerUnavailable("the worker pool broke twice while checking one file")

    def _replace(self, executor: ProcessPoolExecutor) -> None:
        if executor is not self._executor:
            return  # another job replaced it already
        self.replacements += 1
        self._executor = self._new_executor()
        _kill_workers(executor)

    async def close(self) -> None:
        executor: Executor = self._executor
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _kill_workers(executor: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor cannot kill a running job before Python 3.14
    # (``terminate_workers``); its process table is the only handle on the stuck worker.
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        process.kill()
    executor.shutdown(wait=False, cancel_futures=True)

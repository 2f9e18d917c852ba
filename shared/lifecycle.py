"""Running a service until SIGTERM or SIGINT, then shutting it down in order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("lifecycle")

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]

# Once the service's main has ended (stopped, or failed), whatever it left running is
# cancelled and has this long to end.
LEFTOVER_GRACE_SECONDS = 5.0
# The exit code of a process that had to leave tasks behind.
STUCK_EXIT_CODE = 70


def run_service(main: ServiceMain) -> None:
    """``main(stop)`` starts its work, awaits ``stop``, then stops consuming, lets in-flight
    messages finish and closes its connections. When it fails (an exception), the process
    exits with it, so that its supervisor restarts it."""
    asyncio.run(_run(main))


async def _run(main: ServiceMain) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await main(stop)
    except BaseException as error:
        await _end_leftovers(error)
        raise
    await _end_leftovers(None)


async def _end_leftovers(error: BaseException | None) -> None:
    """Cancel the tasks ``main`` left running and wait for them, for a while only.

    ``asyncio.run`` would cancel them too, but then wait for ever; and a task may ignore its
    cancellation. aio-pika's reconnection task does, when it is cancelled in the middle of a
    connection attempt: it takes the CancelledError for a failed attempt (the connection was
    not closed, so it cannot tell) and tries again, for good. A service whose start-up failed
    while its broker connection was reconnecting (a node paused under a partition) then hung
    without a word, neither working nor exiting, and its supervisor never restarted it. Such
    a process now says which tasks were stuck and exits."""
    this = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not this]
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    _, stuck = await asyncio.wait(leftovers, timeout=LEFTOVER_GRACE_SECONDS)
    if not stuck:
        return
    log.error(
        "tasks still running after the service ended; exiting without them",
        stuck=sorted(_describe(task) for task in stuck),
        failed=repr(error) if error is not None else None,
        exc_info=error,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(STUCK_EXIT_CODE)


def _describe(task: asyncio.Task[object]) -> str:
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", None) or task.get_name()

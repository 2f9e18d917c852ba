"""Running a service until SIGTERM or SIGINT, then shutting it down in order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


def run_service(main: ServiceMain) -> None:
    """``main(stop)`` starts its work, awaits ``stop``, then stops consuming, lets in-flight
    messages finish and closes its connections."""
    asyncio.run(_run(main))


async def _run(main: ServiceMain) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await main(stop)

"""Jobs for the worker-pool tests: module-level, so spawned processes can import them."""

from __future__ import annotations

import os
import signal
import time


def sleep_then_return(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


def wedge(seconds: float) -> str:
    """Stuck where the worker's timer cannot interrupt it (as inside a C parser)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return "should have been killed"


def die() -> str:
    os._exit(3)

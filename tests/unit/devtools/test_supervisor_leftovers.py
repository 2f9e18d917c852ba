"""A service that leaves a child behind (the verifier's check workers) neither hangs the
supervisor nor outlives it: the child holds the service's output pipe open, so waiting for
the pipe's end would wait for ever."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from devtools.supervisor import ProcessSpec, Supervisor


def leaves_a_child(pid_file: Path, then: str) -> list[str]:
    """A process that starts a long sleep (its pid written to ``pid_file``), then ``then``."""
    code = (
        "import subprocess, signal, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pid_file)!r}, 'a').write(f'{{child.pid}}\\n')\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"{then}\n"
    )
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped by its new parent) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def started(pid_file: Path) -> list[int]:
    return [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []


async def children(pid_file: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(pids := started(pid_file)) >= count:
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} children started")


async def test_stop_returns_and_ends_what_a_service_left_behind(tmp_path: Path) -> None:
    pids = tmp_path / "children"
    spec = ProcessSpec("parent", leaves_a_child(pids, "time.sleep(300)"))
    supervisor = Supervisor([spec], tmp_path)
    await supervisor.start()
    [child] = await children(pids, 1)

    await asyncio.wait_for(supervisor.stop(grace=2), timeout=15)

    await asyncio.sleep(0.2)
    assert not alive(child)


async def test_a_crashed_service_is_restarted_and_its_leftovers_ended(tmp_path: Path) -> None:
    pids = tmp_path / "children"
    spec = ProcessSpec("parent", leaves_a_child(pids, "sys.exit(3)"))
    supervisor = Supervisor([spec], tmp_path)
    await supervisor.start()
    try:
        first, _second = await children(pids, 2)  # the second: started by the restart
        assert supervisor.restarts("parent") >= 1
        assert not alive(first)
    finally:
        await asyncio.wait_for(supervisor.stop(grace=2), timeout=15)

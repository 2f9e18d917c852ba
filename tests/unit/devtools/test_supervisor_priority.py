"""The supervisor starts a process at the CPU priority its spec asks for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devtools.run_system import system_processes
from devtools.supervisor import ProcessSpec, Supervisor


async def test_a_process_runs_at_the_nice_value_of_its_spec(tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(
        [ProcessSpec("eager", sleeper), ProcessSpec("patient", sleeper, nice=7)], tmp_path
    )
    await supervisor.start()
    try:
        eager, patient = supervisor.pid("eager"), supervisor.pid("patient")
        assert eager is not None and patient is not None
        assert os.getpriority(os.PRIO_PROCESS, eager) == own
        assert os.getpriority(os.PRIO_PROCESS, patient) == min(19, own + 7)
    finally:
        await supervisor.stop(grace=2)


def test_the_consumers_yield_to_the_api_and_the_relay() -> None:
    nice = {spec.name: spec.nice for spec in system_processes({})}
    assert nice["api"] == nice["relay"] == 0
    assert all(nice[name] > 0 for name in ("projector", "verifier", "payments", "mailer"))

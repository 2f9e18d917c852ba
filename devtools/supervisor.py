"""A small process supervisor: what a compose restart policy does, for ``make run`` and the
end-to-end tests.

Each service runs as its own OS process. Its output goes to ``<log_dir>/<name>.log`` and,
when ``echo`` is on, to the terminal as readable lines. A process that exits while the system
is running is restarted after a backoff, with a line saying so. ``stop()`` sends SIGTERM to
every process (graceful shutdown), then SIGKILL to what is still alive after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    # CPU priority (``nice``): higher yields the CPU to the others when it is scarce.
    nice: int = 0


@dataclass
class _Running:
    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    watcher: asyncio.Task[None] | None = None


def render_line(name: str, raw: str, width: int) -> str:
    """A JSON log line as ``name | time level event key=value ...``; other text as is."""
    try:
        record = json.loads(raw)
    except ValueError:
        return f"{name:<{width}} | {raw}"
    if not isinstance(record, dict):
        return f"{name:<{width}} | {raw}"
    at = str(record.pop("timestamp", ""))[11:19]
    level = str(record.pop("level", "")).upper()
    event = record.pop("event", "")
    record.pop("service", None)
    rest = " ".join(f"{key}={value}" for key, value in record.items())
    return f"{name:<{width}} | {at} {level:<7} {event} {rest}".rstrip()


class Supervisor:
    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        *,
        echo: TextIO | None = None,
        base_env: Mapping[str, str] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self.log_dir = log_dir
        self.echo = echo
        self.base_env = dict(base_env if base_env is not None else os.environ)
        self.max_backoff = max_backoff
        self._running = {spec.name: _Running(spec) for spec in specs}
        self._stopping = False
        self._width = max((len(spec.name) for spec in specs), default=8)

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for running in self._running.values():
            await self._spawn(running)

    def names(self) -> list[str]:
        return list(self._running)

    def pid(self, name: str) -> int | None:
        process = self._running[name].process
        return process.pid if process and process.returncode is None else None

    def pids(self) -> dict[str, int]:
        """The running processes by name; each pid is also its process group's id."""
        return {name: pid for name in self._running if (pid := self.pid(name)) is not None}

    def restarts(self, name: str) -> int:
        return self._running[name].restarts

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Kill one process (the supervisor restarts it): for fault tests."""
        pid = self.pid(name)
        if pid is not None:
            # Its whole process group, as a container runtime kills the whole container: the
            # verifier's worker processes would otherwise outlive it (process_group=0: the
            # group id is the pid).
            os.killpg(pid, signum)

    async def stop(self, grace: float = 15.0) -> None:
        self._stopping = True
        processes = [r.process for r in self._running.values() if r.process]
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(process), max(0.1, deadline - time.monotonic()))
            # The whole group: what is still running after the grace period, and whatever
            # the service left behind (the verifier's check workers).
            _kill_group(process)
            await process.wait()
        for running in self._running.values():
            if running.watcher:
                running.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running.watcher

    async def _spawn(self, running: _Running) -> None:
        spec = running.spec
        log_file = (self.log_dir / f"{spec.name}.log").open("ab")
        running.process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env={**self.base_env, **spec.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # A process group of its own: Ctrl-C reaches the supervisor only (it stops them in
            # order), and a kill takes the whole group. Not a session of its own: with the
            # kernel's autogroup scheduling each session gets an equal share of the CPU, so ten
            # services in ten sessions would squeeze Postgres (one session for all its
            # backends) to a tenth of the machine, and ``nice`` would only rank a process
            # within its own session.
            process_group=0,
        )
        if spec.nice:
            # Set at once, before the service starts any process of its own (they inherit it).
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, running.process.pid, spec.nice)
        running.watcher = asyncio.create_task(self._watch(running, log_file))

    async def _watch(self, running: _Running, log_file: object) -> None:
        process = running.process
        assert process is not None and process.stdout is not None
        name = running.spec.name
        with log_file:  # type: ignore[attr-defined]
            copying = asyncio.create_task(self._copy_output(process, log_file, name))
            code = await _exited(process)
            # Children left behind by a crash (a process pool's workers) keep the output pipe
            # open, so its end never comes: end them as a container runtime ends a container.
            _kill_group(process)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(copying, 5)
        if self._stopping:
            return
        running.restarts += 1
        backoff = min(self.max_backoff, 0.5 * 2 ** min(running.restarts, 5))
        self._say(
            f"{'supervisor':<{self._width}} | {name} exited with code {code}; "
            f"restart #{running.restarts} in {backoff:.1f}s"
        )
        await asyncio.sleep(backoff)
        if not self._stopping:
            await self._spawn(running)

    async def _copy_output(
        self, process: asyncio.subprocess.Process, log_file: object, name: str
    ) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            log_file.write(line)  # type: ignore[attr-defined]
            log_file.flush()  # type: ignore[attr-defined]
            self._say(render_line(name, line.decode(errors="replace").rstrip(), self._width))

    def _say(self, text: str) -> None:
        if self.echo is not None:
            print(text, file=self.echo, flush=True)


async def _exited(process: asyncio.subprocess.Process) -> int:
    """The exit code once the process itself has exited. Not ``process.wait()``: it also
    waits for the output pipe to close, which never happens while a child the process left
    behind holds it (the supervisor then hung, waiting, with the verifier's workers alive)."""
    while process.returncode is None:  # noqa: ASYNC110 (no event says the process alone ended)
        await asyncio.sleep(0.2)
    return process.returncode


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def python_module(
    name: str, module: str, env: Mapping[str, str] | None = None, nice: int = 0
) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-m", module], env or {}, nice)

"""Where a completed application's CPU goes: every process, Postgres and RabbitMQ included.

    set -a; . .run/infra.env; set +a
    .venv/bin/python -m bench.drain_cpu --count 1500

The consumers are frozen while ``count`` standard submissions are accepted (so the API's work
is not in the figures), then they drain the backlog; from then until every application is
terminal and the mailer has gone quiet, each process's CPU time is counted, and printed per
application. Postgres (every backend) and RabbitMQ (``beam.smp``) are counted by command name:
nothing else should run on the machine meanwhile, and no other system's servers either.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from bench.observe import terminal_count, wait_until_terminal
from bench.processes import command_cpu_seconds, cpu_seconds, frozen
from bench.workload import offer
from devtools.infra import infrastructure
from devtools.system import RunningSystem
from shared.manifest import processes

CONSUMERS = tuple(process.name for process in processes() if process.consumes_queues)
SERVERS = {"postgres": "postgres", "rabbitmq": "beam.smp"}
# The mailer sends the last mails after the last status: it is quiet when a second passes
# with less than this CPU time.
QUIET_CPU_SECONDS = 0.02


def cpu_by_process(pids: Mapping[str, int]) -> dict[str, float]:
    cpu = {name: cpu_seconds(pid, family=True) for name, pid in pids.items()}
    cpu.update({name: command_cpu_seconds(command) for name, command in SERVERS.items()})
    return cpu


async def until_quiet(pid: int) -> None:
    last = cpu_seconds(pid, family=True)
    while True:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pid, family=True)
        if now - last < QUIET_CPU_SECONDS:
            return
        last = now


async def measure(count: int, rate: float, extra_env: list[str]) -> None:
    # As ``make bench`` runs the system: the sandbox pays at once.
    env = {
        "LOG_LEVEL": "WARNING",
        "API_WORKERS": "1",
        "PSP_AUTOPAY": "1",
        "PSP_AUTOPAY_DELAY_MS": "0",
    }
    env.update(dict(pair.split("=", 1) for pair in extra_env))
    with infrastructure() as infra, tempfile.TemporaryDirectory() as folder:
        system = RunningSystem(infra, Path(folder), env, prefix="bench")
        await system.start()
        try:
            pids = {name: pid for name, pid in system.supervisor.pids().items() if pid}
            await offer(system.api, 50, 20)  # warm-up: connections, caches
            await wait_until_terminal(system.database_url, 20, timeout=120)
            await until_quiet(pids["mailer"])
            with frozen(pids[name] for name in CONSUMERS):
                load = await offer(system.api, rate, count)
            expected = await terminal_count(system.database_url) + load.accepted
            del pids["api"]  # its work was done before the drain
            before, started = cpu_by_process(pids), time.monotonic()
            await wait_until_terminal(system.database_url, expected, timeout=max(600, count))
            drained = time.monotonic() - started
            await until_quiet(pids["mailer"])
            after = cpu_by_process(pids)
        finally:
            await system.stop()
    per_application = {
        name: (after[name] - before[name]) * 1000 / max(load.accepted, 1) for name in after
    }
    print(
        f"{load.accepted} applications drained in {drained:.1f} s"
        f" ({load.accepted / drained:.1f}/s); CPU ms per application:"
    )
    for name, ms in sorted(per_application.items(), key=lambda item: -item[1]):
        print(f"  {name:10s} {ms:6.2f}")
    print(f"  {'total':10s} {sum(per_application.values()):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1500, help="applications drained")
    parser.add_argument("--rate", type=float, default=300.0, help="submissions/s while frozen")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the services")
    args = parser.parse_args()
    asyncio.run(measure(args.count, args.rate, args.env))


if __name__ == "__main__":
    main()

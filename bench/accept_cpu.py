"""CPU per accepted submission, the API's and Postgres', with the rest of the system frozen.

The accept path's cost on its own, steadier than its rate on a shared machine: the system
starts as for ``make bench``, every other service is stopped (SIGSTOP: the relay and the
consumers take no CPU while the outbox and the queues fill), standard submissions are
offered open-loop below saturation, and the CPU time the API's processes and Postgres'
processes used is divided by the submissions accepted.

    set -a; . .run/infra.env; set +a
    .venv/bin/python -m bench.accept_cpu --rate 100 --seconds 20 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.observe import percentiles
from bench.processes import command_cpu_seconds, cpu_seconds, frozen
from bench.workload import offer
from devtools.infra import infrastructure
from devtools.system import RunningSystem


async def measure(rate: float, seconds: float, workers: int, extra_env: list[str]) -> None:
    env = {"LOG_LEVEL": "WARNING", "API_WORKERS": str(workers)}
    env.update(dict(pair.split("=", 1) for pair in extra_env))
    with infrastructure() as infra, tempfile.TemporaryDirectory() as folder:
        system = RunningSystem(infra, Path(folder), env, prefix="bench")
        await system.start()
        try:
            await offer(system.api, rate, int(rate))  # warm-up: connections, caches
            others = system.supervisor.pids()
            api = others.pop("api")
            # The API's pool keeps its Postgres connections: the backends that serve it live
            # through the measurement, and their CPU time with them.
            with frozen(others.values()):
                api_before = cpu_seconds(api, family=True)
                pg_before = command_cpu_seconds("postgres")
                load = await offer(system.api, rate, int(rate * seconds))
                api_cpu = cpu_seconds(api, family=True) - api_before
                pg_cpu = command_cpu_seconds("postgres") - pg_before
        finally:
            await system.stop()
    latency = percentiles(load.latencies_ms, 50, 99)
    accepted = max(load.accepted, 1)
    print(
        f"accept: {load.accepted} of {load.offered} accepted at {rate:g}/s, {workers} API"
        f" worker(s) (answers {load.statuses}, no answer {load.errors});"
        f" p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms;"
        f" CPU per accepted submission: API {api_cpu * 1000 / accepted:.2f} ms,"
        f" Postgres {pg_cpu * 1000 / accepted:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="submissions offered per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the services (BLOB_DIR=...)"
    )
    args = parser.parse_args()
    asyncio.run(measure(args.rate, args.seconds, args.workers, args.env))


if __name__ == "__main__":
    main()

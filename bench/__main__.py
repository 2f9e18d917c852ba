"""``make bench`` / ``python -m bench [--scenario spike|lag|limit|all]``.

Starts the system as ``make run`` does (its own vhost and database on the local servers),
with the payment sandbox on auto-pay, runs the scenarios and writes ``reports/bench.json``
and ``reports/bench.md``. Figures are printed and recorded, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.backlog import (
    admin_client,
    backlog_applicant,
    outbox_drained,
    peak_memory_while,
    seed_backlog,
    set_paused,
)
from bench.chart import draw_spike
from bench.loadgen import run_open_loop
from bench.observe import (
    Sampler,
    application_count,
    end_to_end_ms,
    lags_ms,
    percentiles,
    queued_now,
    terminal_count,
    wait_until_terminal,
)
from bench.pg_limit import EVENT_BODY as PGBENCH_EVENT_BODY
from bench.pg_limit import run_pgbench
from bench.processes import (
    cpu_ms_per_application,
    frozen,
    process_stats,
    services_cpu_seconds,
)
from bench.workload import machine, offer, register_applicant, submission_factory
from devtools.infra import infrastructure
from devtools.run_system import ROOT
from devtools.system import RunningSystem

REPORTS = ROOT / "reports"
# In the order they run (the backlog last: it leaves a backlog behind).
SCENARIOS = ("spike", "lag", "before-after", "limit", "backlog")
# Series kept in bench.json (and drawn), not figures for the summary table.
DETAIL = ("backlog", "latency_series", "rss_mb_while_draining")


def per_second(answered_at: list[float], latencies_ms: list[float]) -> list[dict[str, float]]:
    """Accept latency p50/p99 of the requests answered in each second of the load."""
    buckets: dict[int, list[float]] = {}
    for at, latency in zip(answered_at, latencies_ms, strict=True):
        buckets.setdefault(int(at), []).append(latency)
    return [
        {"at": second, "answered": len(values), **percentiles(values, 50, 99)}
        for second, values in sorted(buckets.items())
    ]


async def accept_load(system: RunningSystem, rate: float, count: int) -> dict[str, Any]:
    # Earlier scenarios' applications are terminal too: wait for this load's on top of them.
    terminal_before = await terminal_count(system.database_url)
    written_before = await application_count(system.database_url)
    cpu_before = services_cpu_seconds(system.supervisor.pids())
    stop = asyncio.Event()
    sampler = Sampler(system.database_url, system.rabbitmq_url)
    sampling = asyncio.create_task(sampler.run(stop))
    load = await offer(system.api, rate, count)
    accept_done = time.monotonic()
    # The load's clock and the sampler's, on one axis: seconds since the first request was due.
    offset = load.started_at - sampler.started
    try:
        # The pipeline completes ~20-40 applications/s here: 20,000 need more than 600 s.
        await wait_until_terminal(
            system.database_url, terminal_before + load.accepted, timeout=max(600.0, count / 15)
        )
    finally:
        stop.set()
        await sampling
    drain_end = time.monotonic()
    # Every answer (202 and 503 alike, retries' included), from the time its request was due.
    cpu_after = services_cpu_seconds(system.supervisor.pids())
    latency = percentiles(load.latencies_ms, 50, 95, 99, 100)
    accepted_latency = percentiles(load.accepted_latencies_ms, 50, 99)
    journey = percentiles(load.journeys_ms, 50, 99, 100)
    return {
        "offered": count,
        "offered_rps": rate,
        "accepted": load.accepted,
        # Rows written: each client must have made exactly one application.
        "applications_written": await application_count(system.database_url) - written_before,
        # Accepted per second, from the first request's due time to the last 202.
        "accept_rps": round(load.accepted / max(load.last_accepted_at, 1e-9), 1),
        "last_accepted_s": round(load.last_accepted_at, 2),
        "errors": count - load.accepted,
        # Of the errors, the clients that waited 30 s for an answer (from the request's due
        # time) or retried past their deadline, and gave up; the other errors are answers
        # other than 202 (503s are retried) and lost connections.
        "gave_up": load.gave_up,
        "statuses": load.statuses,
        "retries": load.retries,
        "accept_p50_ms": round(latency["p50"], 2),
        "accept_p95_ms": round(latency["p95"], 2),
        "accept_p99_ms": round(latency["p99"], 2),
        "accept_max_ms": round(latency["p100"], 2),
        "accepted_p50_ms": round(accepted_latency["p50"], 2),
        "accepted_p99_ms": round(accepted_latency["p99"], 2),
        "journey_p50_ms": round(journey["p50"], 2),
        "journey_p99_ms": round(journey["p99"], 2),
        "journey_max_ms": round(journey["p100"], 2),
        "loadgen_cpu_s": round(load.cpu_seconds, 2),
        # Every service's CPU (API, relay, consumers) from the first request until the last of
        # this load's applications was terminal, per accepted application.
        "cpu_ms_per_application": cpu_ms_per_application(cpu_before, cpu_after, load.accepted),
        "all_terminal_after_s": round(drain_end - accept_done + load.seconds, 1),
        "backlog": [{**vars(s), "at": round(s.at - offset, 2)} for s in sampler.samples],
        "latency_series": per_second(load.answered_at, load.latencies_ms),
        "_accept_seconds": load.seconds,
        "_drain_seconds": drain_end - accept_done,
    }


async def spike(system: RunningSystem, rate: float, count: int) -> dict[str, Any]:
    result = await accept_load(system, rate, count)
    result["spike_error_rate"] = round(result["errors"] / count, 4)
    samples = result["backlog"]
    completed_at_accept_end = next(
        (s["completed"] for s in samples if s["at"] >= result["_accept_seconds"]), 0
    )
    drain = result["_drain_seconds"]
    e2e = percentiles(await end_to_end_ms(system.database_url), 50, 99)
    result["drain_apps_per_s"] = round(
        (result["accepted"] - completed_at_accept_end) / drain if drain > 0 else 0.0, 1
    )
    result["e2e_p50_ms"] = round(e2e["p50"], 1)
    result["e2e_p99_ms"] = round(e2e["p99"], 1)
    return result


async def lag(system: RunningSystem, rate: float, seconds: float) -> dict[str, Any]:
    started = time.monotonic()
    await accept_load(system, rate, int(rate * seconds))
    outbox, event = await lags_ms(system.database_url, time.monotonic() - started + 5)
    o, e = percentiles(outbox, 50, 99), percentiles(event, 50, 99)
    return {
        "events": len(outbox),
        "outbox_lag_p50_ms": round(o["p50"], 2),
        "outbox_lag_p99_ms": round(o["p99"], 2),
        "event_lag_p50_ms": round(e["p50"], 2),
        "event_lag_p99_ms": round(e["p99"], 2),
    }


async def limit(system: RunningSystem) -> dict[str, Any]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    await register_applicant(system.api)  # pgbench's rows need an applicant to belong to

    async with await psycopg.AsyncConnection.connect(system.database_url, autocommit=True) as db:
        row = await (await db.execute("SELECT id::text FROM api.users LIMIT 1")).fetchone()
    assert row is not None
    params = conninfo_to_dict(system.database_url)
    params.update(user="api", password=system.env.get("API_DB_PASSWORD", "api-dev-password"))
    # What Postgres alone commits: every service is frozen meanwhile. Otherwise the relay
    # publishes pgbench's rows and the consumers, still working through the earlier scenarios'
    # queues, take a share of the two cores (1,237 tps measured that way against 2,870).
    # pgbench only inserts new rows, so no lock a frozen transaction holds is in its way.
    # Its rows are removed before the relay goes on.
    with frozen(system.supervisor.pids().values()):
        tps = await asyncio.to_thread(run_pgbench, make_conninfo(**params), row[0])  # type: ignore[arg-type]
        async with await psycopg.AsyncConnection.connect(
            system.database_url, autocommit=True
        ) as db:
            await db.execute("DELETE FROM api.outbox WHERE body = %s", (PGBENCH_EVENT_BODY,))
    return {"pg_limit_tps": round(tps, 1)}


SIMULATED = {
    "VERIFY_SIMULATED_MS": "300",
    "PAYMENT_SIMULATED_MS": "200",
    "SMTP_SIMULATED_MS": "100",
}
SIMULATING = {
    "VERIFY_SIMULATED_MS": "verifier",
    "PAYMENT_SIMULATED_MS": "payments",
    "SMTP_SIMULATED_MS": "mailer",
}


async def before_after(
    system: RunningSystem, rate: float, count: int, spike_rate: float, spike_count: int
) -> dict[str, Any]:
    """The same submissions against the synchronous design and against the system, both with
    300 ms verification, 200 ms provider and 100 ms SMTP of simulated work; and the spike
    offered to the synchronous design (the system's answer to it is the spike scenario's).

    Every client gives up 30 s after it meant to send (a proxy's or a browser's patience):
    an answer later than that is an error."""
    from devtools.system import free_port

    port = free_port()
    log = (REPORTS / "sync_app.log").open("wb")
    baseline = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sync_app",
        "--port",
        str(port),
        env={**os.environ, **SIMULATED},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        await _wait_http(f"http://127.0.0.1:{port}/docs")
        token = await register_applicant(system.api)
        build = submission_factory(f"http://127.0.0.1:{port}", token)
        sync = await run_open_loop("127.0.0.1", port, build, rate, count)
        sync_spike = await run_open_loop("127.0.0.1", port, build, spike_rate, spike_count)
    finally:
        baseline.terminate()
        await baseline.wait()
        log.close()
    for variable, service in SIMULATING.items():
        await system.restart(service, **{variable: SIMULATED[variable]})
    try:
        load = await accept_load(system, rate, count)
    finally:
        for variable, service in SIMULATING.items():
            await system.restart(service, **{variable: "0"})
    sync_p95 = percentiles(sync.latencies_ms, 95)["p95"]
    return {
        "sync_p95_ms": round(sync_p95, 1),
        "sync_error_rate": round(1 - sync.accepted / count, 4),
        "async_p95_ms": load["accept_p95_ms"],
        "async_error_rate": round(1 - load["accepted"] / count, 4),
        "sync_async_p95_ratio": round(sync_p95 / load["accept_p95_ms"], 1),
        "before_after_offered_rps": rate,
        "before_after_offered": count,
        "sync_spike_error_rate": round(1 - sync_spike.accepted / spike_count, 4),
        "sync_spike_accept_rps": round(sync_spike.accepted / sync_spike.seconds, 1),
    }


async def backlog(
    system: RunningSystem, size: int, rate: float, seconds: float, drain_seconds: float
) -> dict[str, Any]:
    """Accept latency at ``rate`` without and with ``size`` applications queued behind paused
    workers; then the workers resume and every process's memory is watched while they drain."""
    admin = await admin_client(system.api)
    try:
        await set_paused(admin, True)
        without = await accept_only(system, rate, seconds)
        seeded_s = await seed_backlog(system, await backlog_applicant(system), size)
        published_s = await outbox_drained(system.database_url, timeout=900)
        queued = await queued_now(system.rabbitmq_url)
        with_backlog = await accept_only(system, rate, seconds)
        await set_paused(admin, False)
        peaks = await peak_memory_while(system, drain_seconds)
        # Consumed less published meanwhile: the queues' depth is what the workers got through.
        consumed = queued - await queued_now(system.rabbitmq_url)
    finally:
        await set_paused(admin, False)
        await admin.aclose()
    return {
        "backlog_applications": size,
        "backlog_queued_messages": queued,
        "backlog_written_s": round(seeded_s, 1),
        "backlog_published_after_s": round(seeded_s + published_s, 1),
        "backlog_accept_rate": rate,
        "accept_p99_ms_without_backlog": without["p99"],
        "accept_p99_ms_with_backlog": with_backlog["p99"],
        "accept_p99_backlog_ratio": round(with_backlog["p99"] / without["p99"], 2),
        "backlog_queue_drop_per_s": round(consumed / drain_seconds, 1),
        "backlog_drain_window_s": drain_seconds,
        "max_rss_mb_while_draining": max(peaks.values()),
        "rss_mb_while_draining": peaks,
    }


async def accept_only(system: RunningSystem, rate: float, seconds: float) -> dict[str, float]:
    """Accept latency alone (nothing waits for the pipeline)."""
    load = await offer(system.api, rate, int(rate * seconds))
    return {k: round(v, 2) for k, v in percentiles(load.latencies_ms, 50, 99).items()}


async def _wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def git_revision() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def markdown(report: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in report["summary"].items()]
    lines = ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    draining = report["scenarios"].get("backlog", {}).get("rss_mb_while_draining", {})
    lines += [
        "",
        "| process | max RSS MB | RSS MB while draining the backlog | CPU s |",
        "|---|---|---|---|",
    ]
    for name, stats in report["processes"].items():
        lines.append(
            f"| {name} | {stats['max_rss_mb']} | {draining.get(name, '-')} | {stats['cpu_s']} |"
        )
    if "rabbitmq" in draining:
        lines.append(f"| rabbitmq (node memory) | - | {draining['rabbitmq']} | - |")
    took = ", ".join(f"{name} {seconds} s" for name, seconds in report["scenario_seconds"].items())
    lines += ["", f"Scenario durations: {took}."]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    # Two API processes (uvicorn workers): one Python process accepts about 250 submissions/s
    # on one core, and the consumers (nice 10) leave the API both cores during a spike.
    env = {
        "LOG_LEVEL": "WARNING",
        "PSP_AUTOPAY": "1",
        "PSP_AUTOPAY_DELAY_MS": "0",
        "API_WORKERS": "2",
    }
    env.update(dict(item.split("=", 1) for item in args.env))
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    report: dict[str, Any] = {
        "machine": machine(),
        "revision": git_revision(),
        "scenarios": {},
        "scenario_seconds": {},
    }
    REPORTS.mkdir(exist_ok=True)
    with infrastructure() as infra, tempfile.TemporaryDirectory() as folder:
        system = RunningSystem(infra, Path(folder), env)
        await system.start()
        try:
            runs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
                "spike": lambda: spike(system, args.rate, args.count),
                "lag": lambda: lag(system, args.lag_rate, args.lag_seconds),
                "before-after": lambda: before_after(
                    system, args.compare_rate, args.compare_count, args.rate, args.count
                ),
                "limit": lambda: limit(system),
                "backlog": lambda: backlog(
                    system,
                    args.backlog,
                    args.backlog_rate,
                    args.backlog_seconds,
                    args.drain_seconds,
                ),
            }
            for name in scenarios:
                started = time.monotonic()
                report["scenarios"][name] = await runs[name]()
                report["scenario_seconds"][name] = round(time.monotonic() - started, 1)
            report["processes"] = process_stats(system.supervisor.pids())
        finally:
            await system.stop()
            # The services' logs outlive the run's folder: a failed run says why.
            shutil.copytree(Path(folder) / "logs", REPORTS / "logs", dirs_exist_ok=True)
    summary: dict[str, Any] = {}
    for scenario in report["scenarios"].values():
        summary.update({k: v for k, v in scenario.items() if k not in DETAIL and k[0] != "_"})
    if "pg_limit_tps" in summary and "accept_rps" in summary:
        summary["accept_fraction_of_pg_limit"] = round(
            summary["accept_rps"] / summary["pg_limit_tps"], 3
        )
    report["summary"] = summary
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    (REPORTS / "bench.md").write_text(markdown(report))
    if "spike" in report["scenarios"]:
        draw_spike(report["scenarios"]["spike"], REPORTS / "spike.png")
    print(markdown(report))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scenario",
        default="all",
        choices=["all", *SCENARIOS],
    )
    # Defaults sized so that ``make bench`` ends within 10 minutes on 2 cores, where the whole
    # pipeline completes about 30 applications/s: every spike application must complete
    # before the figures are final. The full sizes: --count 20000 --lag-seconds 30.
    parser.add_argument("--rate", type=float, default=1000.0, help="spike: offered submissions/s")
    parser.add_argument("--count", type=int, default=4_000, help="spike: submissions offered")
    parser.add_argument("--lag-rate", type=float, default=200.0)
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    # Below the accept path's capacity with the pipeline busy (~200/s): at 200/s its p95 moves
    # between 0.1 and 2.3 s from run to run (queueing at the knee), and the comparison with it.
    parser.add_argument("--compare-rate", type=float, default=100.0, help="before/after rate")
    parser.add_argument("--compare-count", type=int, default=800)
    parser.add_argument("--backlog", type=int, default=200_000, help="applications queued")
    parser.add_argument("--backlog-rate", type=float, default=100.0, help="accept rate beside it")
    parser.add_argument("--backlog-seconds", type=float, default=20.0)
    parser.add_argument("--drain-seconds", type=float, default=20.0, help="memory watched for")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the services")
    return parser.parse_args()


if __name__ == "__main__":
    # ``kill`` stops a run as Ctrl-C does: the main task is cancelled and the services it
    # started are stopped (the default SIGTERM would leave them running).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main(parse()))

"""``python -m bench.bulk``: the low and batch lanes under real sizes.

- **report**: ``--applications`` (200,000) applications, then a report (``--report-format``
  csv or xlsx) of all of them
  asked for over HTTP: the time from the request to the file (and the builder's own time),
  and the mailer's resident memory before and at its peak while building (sampled from
  /proc every 50 ms: the report must not load its rows).
- **fan-out**: an announcement to ``--recipients`` (2,000) applicants with the batch lane's
  rate set to ``--batch-rate`` (100/s): the rate the mails went out at, from the mailer's own
  ledger (first to last ``sent``), against the configured one.

Starts the system as ``make run`` does, in its own vhost and database on the local servers
(``INFRA_MODE=external`` and the servers' URLs in the environment: the shared ones). Writes
``reports/bulk.json``. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.backlog import admin_client
from bench.processes import cpu_seconds, current_rss_mb, services_cpu_seconds
from devtools.infra import infrastructure
from devtools.run_system import ROOT
from devtools.seeding import seed_applicants
from devtools.system import RunningSystem

REPORTS = ROOT / "reports"


async def _wait_status(
    admin: httpx.AsyncClient, url: str, done: str, timeout: float, on_tick: Any = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await admin.get(url)).json()
        if on_tick is not None:
            on_tick()
        if body.get("status") in (done, "failed"):
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not {done} after {timeout}s: {body}")
        await asyncio.sleep(0.05)


async def report_scenario(
    system: RunningSystem, applications: int, report_format: str = "csv"
) -> dict[str, Any]:
    program = f"Bench {uuid.uuid4().hex[:6]}"
    seeded = time.monotonic()
    await seed_applicants(system.database_url, applications, program)
    seed_seconds = time.monotonic() - seeded
    mailer = {"mailer": system.supervisor.pid("mailer")}
    await asyncio.sleep(1)
    before = current_rss_mb(mailer).get("mailer", 0.0)
    peak = before

    def sample() -> None:
        nonlocal peak
        peak = max(peak, current_rss_mb(mailer).get("mailer", 0.0))

    mailer_cpu = cpu_seconds(mailer["mailer"] or 0, family=True)
    admin = await admin_client(system.api)
    try:
        asked = time.monotonic()
        response = await admin.post(
            "/admin/reports",
            json={
                "kind": "applications",
                "format": report_format,
                "filters": {"program": program},
            },
        )
        response.raise_for_status()
        status = await _wait_status(
            admin, response.json()["statusUrl"], "done", timeout=600, on_tick=sample
        )
        total_seconds = time.monotonic() - asked
        mailer_cpu = cpu_seconds(mailer["mailer"] or 0, family=True) - mailer_cpu
    finally:
        await admin.aclose()
    builder_seconds = None
    if status.get("finishedAt"):
        async with await psycopg.AsyncConnection.connect(system.database_url) as conn:
            row = await (
                await conn.execute(
                    "SELECT extract(epoch FROM finished_at - started_at) FROM mailer.report_runs"
                    " WHERE report_id = %s",
                    (response.json()["reportId"],),
                )
            ).fetchone()
            builder_seconds = float(row[0]) if row else None
    return {
        "applications": applications,
        "format": report_format,
        "status": status["status"],
        "rows": status.get("rowsTotal"),
        "bytes": status.get("bytes"),
        "seed_seconds": round(seed_seconds, 1),
        "request_to_done_seconds": round(total_seconds, 2),
        "builder_seconds": round(builder_seconds, 2) if builder_seconds else None,
        "mailer_rss_before_mb": before,
        "mailer_rss_peak_mb": peak,
        "mailer_cpu_seconds": round(mailer_cpu, 2),
        "error": status.get("error"),
    }


async def fanout_scenario(system: RunningSystem, recipients: int, rate: float) -> dict[str, Any]:
    program = f"Bench fan-out {uuid.uuid4().hex[:6]}"
    await seed_applicants(system.database_url, recipients, program)
    pids = system.supervisor.pids()
    cpu_before = services_cpu_seconds(pids), cpu_seconds(pids["mailer"], family=True)
    admin = await admin_client(system.api)
    try:
        asked = time.monotonic()
        response = await admin.post(
            "/admin/announcements",
            json={
                "subject": f"Bench {program}",
                "body": "Hello.",
                "audience": {"kind": "program", "value": program},
            },
        )
        response.raise_for_status()
        url = response.json()["statusUrl"]
        status = await _wait_status(admin, url, "done", timeout=recipients / rate * 3 + 120)
        total_seconds = time.monotonic() - asked
        services_cpu = services_cpu_seconds(pids) - cpu_before[0]
        mailer_cpu = cpu_seconds(pids["mailer"], family=True) - cpu_before[1]
    finally:
        await admin.aclose()
    async with await psycopg.AsyncConnection.connect(system.database_url) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*), extract(epoch FROM max(d.updated_at) - min(d.updated_at)),"
                " extract(epoch FROM r.expanded_at - a.created_at),"
                " extract(epoch FROM min(d.updated_at) - r.expanded_at)"
                " FROM mailer.announcement_deliveries d"
                " JOIN mailer.announcement_runs r USING (announcement_id)"
                " JOIN api.announcements a ON a.id = d.announcement_id"
                " WHERE d.announcement_id = %s AND d.outcome = 'sent'"
                " GROUP BY r.expanded_at, a.created_at",
                (response.json()["announcementId"],),
            )
        ).fetchone()
    assert row is not None
    sent, spread = int(row[0]), float(row[1] or 0)
    expansion, first_mail = float(row[2]), float(row[3])
    return {
        "recipients": recipients,
        "configured_rate_per_second": rate,
        "sent": sent,
        "failed": status["failed"],
        # from the request's commit to the expansion's start, and from there to the first mail
        "request_to_expansion_seconds": round(expansion, 2),
        "expansion_to_first_mail_seconds": round(first_mail, 2),
        "first_to_last_sent_seconds": round(spread, 2),
        "measured_rate_per_second": round((sent - 1) / spread, 1) if spread else None,
        "request_to_done_seconds": round(total_seconds, 2),
        # CPU per mail (status polling by this script included in the api's share)
        "mailer_cpu_ms_per_mail": round(mailer_cpu * 1000 / max(sent, 1), 2),
        "services_cpu_ms_per_mail": round(services_cpu * 1000 / max(sent, 1), 2),
    }


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"arguments": vars(arguments)}
    with infrastructure() as infra, tempfile.TemporaryDirectory(prefix="bench-bulk-") as folder:
        overrides = {"MAILER_RATE_BATCH": str(arguments.batch_rate)}
        system = RunningSystem(infra, Path(folder), overrides, prefix="bench")
        await system.start()
        try:
            if arguments.scenario in ("report", "all"):
                results["report"] = await report_scenario(
                    system, arguments.applications, arguments.report_format
                )
                print(json.dumps(results["report"]), flush=True)
            if arguments.scenario in ("fanout", "all"):
                results["fanout"] = await fanout_scenario(
                    system, arguments.recipients, arguments.batch_rate
                )
                print(json.dumps(results["fanout"]), flush=True)
        finally:
            await system.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("report", "fanout", "all"), default="all")
    parser.add_argument("--applications", type=int, default=200_000)
    parser.add_argument("--report-format", choices=("csv", "xlsx"), default="csv")
    parser.add_argument("--recipients", type=int, default=2_000)
    parser.add_argument("--batch-rate", type=float, default=100.0)
    results = asyncio.run(run(parser.parse_args()))
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "bulk.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""One chaos run: start the system, load it while breaking things on a seeded schedule, wait
until it is quiet, audit every effect, write ``reports/chaos.json`` and print a summary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from devtools.chaos.announcements import Announcements
from devtools.chaos.audit import Evidence, Findings, judge
from devtools.chaos.breakers import Breakers
from devtools.chaos.cluster_faults import CLUSTER_FAULTS, ClusterBreakers, ClusterInfra
from devtools.chaos.evidence import Collector
from devtools.chaos.load import Load
from devtools.chaos.stalls import longest_gap, typical_gap
from devtools.infra import Infra, from_environment
from devtools.run_system import ROOT
from devtools.servers.envfile import read as read_env_file
from devtools.system import RunningSystem
from services.api.statuses import TERMINAL

log = structlog.get_logger("chaos")


def servers_from_environment() -> Infra:
    """The URLs of the environment, else of ``.run/infra.env`` (see ``devtools.infra``)."""
    found = from_environment({**read_env_file(), **os.environ})
    if found is None:
        raise SystemExit("no RABBITMQ_URL / DATABASE_URL and no .run/infra.env: run `make infra`")
    return found


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    applications: int = 2000
    rate: float = 10.0  # submissions per second
    rounds: int = 1  # how many times each fault is done
    server_faults: bool = True  # restart/stop RabbitMQ and Postgres (when they are ours)
    cluster: bool = False  # on a cluster (devtools.chaos.cluster_faults): its faults instead
    applicants: int = 10
    # Announcements published while the faults land, each to this many seeded recipients.
    announcements: int = 3
    announcement_recipients: int = 100
    handler_failure_rate: float = 0.05
    provider_failure_rate: float = 0.05
    smtp_failure_rate: float = 0.05
    latency_ms: float = 5.0
    quiet_timeout: float = 600.0
    report: Path = ROOT / "reports" / "chaos.json"
    folder: Path = field(default_factory=lambda: ROOT / ".run" / "chaos")

    def overrides(self) -> dict[str, str]:
        return {
            "PSP_AUTOPAY": "1",
            "FAULT_SEED": str(self.seed),
            "FAULT_HANDLER_FAILURE_RATE": str(self.handler_failure_rate),
            "FAULT_HANDLER_LATENCY_MS": str(self.latency_ms),
            "FAULT_PROVIDER_FAILURE_RATE": str(self.provider_failure_rate),
            "FAULT_PROVIDER_LATENCY_MS": str(self.latency_ms),
            "FAULT_SMTP_FAILURE_RATE": str(self.smtp_failure_rate),
            "FAULT_SMTP_LATENCY_MS": str(self.latency_ms),
        }


async def run_chaos(config: ChaosConfig, servers: Infra | ClusterInfra) -> dict[str, Any]:
    rng = random.Random(config.seed)
    print(f"chaos: seed {config.seed}", flush=True)
    folder = config.folder / f"seed-{config.seed}-{int(time.time())}"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = config.overrides()
    if isinstance(servers, ClusterInfra):
        overrides.update(servers.service_environment())
    system = RunningSystem(servers, folder, overrides, prefix="chaos")
    await system.start()
    started, started_wall = time.monotonic(), time.time()
    breakers: Breakers
    if isinstance(servers, ClusterInfra):
        fault_rng = random.Random(rng.random())
        breakers = ClusterBreakers(system, servers=servers, started=started, rng=fault_rng)
    else:
        breakers = Breakers(
            system,
            controls_servers=servers.controllable and config.server_faults,
            started=started,
            mode=servers.mode,
        )
    load = Load(system.api, rng=random.Random(rng.random()), started=started)
    announcements = Announcements(
        system,
        rng=random.Random(rng.random()),
        count=config.announcements,
        recipients=config.announcement_recipients,
    )
    collector = Collector(system)
    try:
        await load.register()
        await announcements.prepare()
        plan = breakers.plan(rng, config.rounds)
        print(f"chaos: {config.applications} applications at {config.rate}/s; plan {plan}")
        load_seconds = config.applications / config.rate
        submitting = [
            asyncio.create_task(load.run(config.applications, config.rate)),
            asyncio.create_task(announcements.publish_during(load_seconds)),
        ]
        try:
            await schedule(breakers, plan, rng, load_seconds)
        except BaseException:
            for task in submitting:
                task.cancel()
            raise
        finally:
            await breakers.ensure_servers_up()
        await asyncio.gather(*submitting)
        submitted_in = time.monotonic() - started
        quiet, waited = await wait_quiet(collector, load, config.quiet_timeout)
        evidence = Evidence(
            accepted=frozenset(load.result.accepted.values()),
            statuses=await collector.statuses(),
            provider_payments=await collector.provider_payments(),
            mails=collector.mails(),
            unpublished_outbox=await collector.unpublished_outbox(),
            dead_letters=await collector.dead_letters(),
            poison_ids=frozenset(breakers.record.poison),
            server_errors=load.result.server_errors,
            postgres_windows=breakers.record.postgres_windows,
            announcements=await announcements.published(),
            announcement_audience=announcements.audience,
        )
        findings = judge(evidence)
        report = build_report(config, servers, breakers, load, findings, quiet=quiet)
        report["announcements"] = {
            "published": len(evidence.announcements),
            "client_attempts": announcements.attempts,
            "client_accepted": len(announcements.answered),
            "recipients_each": len(announcements.audience),
            "faults": findings.announcement_faults,
        }
        if isinstance(breakers, ClusterBreakers):
            completed = [at - started_wall for at in await collector.completion_times()]
            report["cluster"] = cluster_section(breakers, load.result.accepted_at, completed)
        report["durations"].update(
            load_and_faults_seconds=round(submitted_in, 1),
            quiet_wait_seconds=round(waited, 1),
            total_seconds=round(time.monotonic() - started, 1),
        )
        report["logs"] = str(folder / "logs")
        report["report_path"] = str(config.report)
    finally:
        await breakers.ensure_servers_up()
        await load.close()
        await collector.close()
        await system.stop()
    config.report.parent.mkdir(parents=True, exist_ok=True)
    config.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(summary(report), flush=True)
    return report


# Roughly how long a server action takes under load on 2 cores (the outage itself is 30 s).
EXPECTED_SECONDS = {
    "restart-rabbitmq": 30.0,
    "stop-rabbitmq": 70.0,
    "restart-postgres": 3.0,
    **CLUSTER_FAULTS,
}


async def schedule(
    breakers: Breakers, plan: list[str], rng: random.Random, load_seconds: float
) -> None:
    """Kills and poison on one seeded timeline, the server actions on another (a server is
    never broken twice at once), both spread over the load so that they land while
    applications are still being submitted."""
    servers = [action for action in plan if action in EXPECTED_SECONDS]
    others = [action for action in plan if action not in EXPECTED_SECONDS]
    timelines = [
        asyncio.create_task(spread(breakers, others, rng, load_seconds)),
        asyncio.create_task(spread(breakers, servers, random.Random(rng.random()), load_seconds)),
    ]
    try:
        await asyncio.gather(*timelines)
    finally:
        for timeline in timelines:  # one failed: do not leave the other breaking things
            timeline.cancel()
        await asyncio.gather(*timelines, return_exceptions=True)


async def spread(
    breakers: Breakers, actions: list[str], rng: random.Random, load_seconds: float
) -> None:
    """One after another at jittered intervals; the time the actions take is left out."""
    busy = sum(EXPECTED_SECONDS.get(action, 0.0) for action in actions)
    gap = max(1.0, (load_seconds - busy) / (len(actions) + 1))
    for action in actions:
        await asyncio.sleep(gap * rng.uniform(0.5, 1.5))
        await breakers.do(action)


async def wait_quiet(collector: Collector, load: Load, timeout: float) -> tuple[bool, float]:
    """Until every accepted application is terminal, every outbox is published and every work
    queue is empty, three checks in a row (the management API's figures lag a few seconds)."""
    began = time.monotonic()
    accepted = set(load.result.accepted.values())
    calm = stuck = 0
    while time.monotonic() - began < timeout:
        try:
            statuses = await collector.statuses()
            pending = sum(1 for a in accepted if statuses.get(a) not in TERMINAL)
            unpublished = sum((await collector.unpublished_outbox()).values())
            busy = await collector.busy_work()
        except Exception as error:  # a server still coming back: look again
            log.info("not quiet yet", error=str(error))
            calm = 0
        else:
            calm = calm + 1 if pending == unpublished == busy == 0 else 0
            if calm >= 3:
                return True, time.monotonic() - began
            # Nothing left anywhere that could move the pending ones on: stop waiting.
            stuck = stuck + 1 if pending and unpublished == busy == 0 else 0
            if stuck >= 10:
                return False, time.monotonic() - began
            print(f"chaos: waiting: {pending} pending, {unpublished} unpublished, {busy} queued")
        await asyncio.sleep(3)
    return False, time.monotonic() - began


def cluster_section(
    breakers: ClusterBreakers, accepted_at: list[float], completed_at: list[float]
) -> dict[str, Any]:
    """Per fault: its timings, and how long accepts and completions stalled around it; per
    kind of fault: the longest of each."""
    faults = []
    worst: dict[str, dict[str, float | None]] = {}
    for fault in breakers.faults:
        window = (fault["began"], fault["ended"])
        stalls = {
            "accepts_stalled_seconds": longest_gap(accepted_at, *window),
            "completions_stalled_seconds": longest_gap(completed_at, *window),
        }
        faults.append({**fault, **stalls})
        kind = worst.setdefault(fault["action"], {})
        for name, value in stalls.items():
            known = kind.get(name)
            kind[name] = value if known is None or (value is not None and value > known) else known
    return {
        "nodes": [node.name for node in breakers.cluster.nodes],
        # Nodes that did not rejoin by themselves after a heal or restart, restarted as an
        # operator would (devtools.cluster.Cluster.rejoin).
        "operator_restarts": [
            {
                "action": fault["action"],
                "began": fault["began"],
                "nodes": fault["operator_restarts"],
            }
            for fault in breakers.faults
            if fault.get("operator_restarts")
        ],
        "partition_handling": "pause_minority",
        "faults": faults,
        "longest_stall_per_fault": worst,
        "typical_gap_seconds": {
            "accepts": typical_gap(accepted_at),
            "completions": typical_gap(completed_at),
        },
    }


def build_report(
    config: ChaosConfig,
    servers: Infra | ClusterInfra,
    breakers: Breakers,
    load: Load,
    findings: Findings,
    *,
    quiet: bool,
) -> dict[str, Any]:
    record = breakers.record
    result = load.result
    return {
        "seed": config.seed,
        "applications": config.applications,
        "rate_per_second": config.rate,
        "accepted": len(result.accepted),
        "infra_mode": servers.mode,
        "fault_rates": {
            "handler": config.handler_failure_rate,
            "provider": config.provider_failure_rate,
            "smtp": config.smtp_failure_rate,
            "latency_ms": config.latency_ms,
        },
        "kills": dict(record.kills),
        "restarts": dict(record.restarts),
        "skipped_faults": [
            f"{action}: "
            + (
                f"servers not controllable in {servers.mode} mode"
                if not servers.controllable
                else "--no-server-faults"
            )
            for action in record.skipped
        ],
        "poison_injected": len(record.poison),
        "quiet": quiet,
        "lost": len(findings.lost),
        "duplicate_payments": len(findings.duplicate_payments),
        "duplicate_emails": len(findings.duplicate_emails),
        "non_terminal": len(findings.non_terminal),
        "missing_payments": len(findings.missing_payments),
        "missing_emails": len(findings.missing_emails),
        "unpublished_outbox": findings.unpublished_outbox,
        "unexpected_dead_letters": len(findings.unexpected_dead_letters),
        "poison_missing_from_dlqs": findings.poison_missing,
        "api_5xx": findings.api_5xx,
        "unexpected_5xx": findings.unexpected_5xx,
        "terminal_states": findings.terminal_states,
        "client": {
            "retries": result.retries,
            "shed_503": result.shed,
            "connection_errors": result.connection_errors,
            "idempotent_replays": result.replayed,
            "refused_4xx": {str(k): v for k, v in result.refused.items()},
            "gave_up": result.gave_up,
        },
        "durations": {
            "actions": record.durations,
            "postgres_restart_windows": [
                [round(a, 1), round(b, 1)] for a, b in record.postgres_windows
            ],
        },
        "timeline": record.timeline,
        "examples": {
            "lost": findings.lost[:10],
            "non_terminal": dict(list(findings.non_terminal.items())[:10]),
            "duplicate_payments": dict(list(findings.duplicate_payments.items())[:10]),
            "duplicate_emails": dict(list(findings.duplicate_emails.items())[:10]),
            "missing_emails": dict(list(findings.missing_emails.items())[:10]),
            "unexpected_dead_letters": [asdict(d) for d in findings.unexpected_dead_letters[:10]],
        },
        "passed": quiet and not findings.failed,
    }


def summary(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        "",
        f"Chaos run {verdict}  (seed {report['seed']}, infra {report['infra_mode']})",
        f"  applications   {report['accepted']} accepted of {report['applications']}"
        f" at {report['rate_per_second']}/s; terminal states {report['terminal_states']}",
        f"  kills          {report['kills']}",
        f"  restarts       {report['restarts']}",
        f"  poison         {report['poison_injected']} injected,"
        f" {report['poison_missing_from_dlqs']} missing from the DLQs",
        f"  lost           {report['lost']}    non-terminal {report['non_terminal']}",
        f"  duplicates     payments {report['duplicate_payments']}, emails"
        f" {report['duplicate_emails']}",
        f"  missing        payments {report['missing_payments']}, emails"
        f" {report['missing_emails']}; unpublished outbox {report['unpublished_outbox'] or 0}",
        f"  dead letters   {report['unexpected_dead_letters']} unexpected",
        f"  announcements  {_announcements_line(report.get('announcements'))}",
        f"  API 5xx        {report['api_5xx'] or 0} ({report['unexpected_5xx']} outside the"
        " Postgres restart window)",
        f"  client         {report['client']}",
        f"  durations      {report['durations']['load_and_faults_seconds']}s load and faults,"
        f" {report['durations']['quiet_wait_seconds']}s until quiet",
    ]
    if "cluster" in report:
        lines.append(f"  node restarts  {report['cluster']['operator_restarts'] or 'none needed'}")
    for kind, stalls in report.get("cluster", {}).get("longest_stall_per_fault", {}).items():
        lines.append(
            f"  {kind:<17} accepts stalled {stalls['accepts_stalled_seconds']}s at most,"
            f" completions {stalls['completions_stalled_seconds']}s"
        )
    if report["skipped_faults"]:
        lines.append(f"  skipped        {report['skipped_faults']}")
    lines.append(f"  report         {report.get('report_path', 'reports/chaos.json')}")
    return "\n".join(lines)


def _announcements_line(section: dict[str, Any] | None) -> str:
    if not section:
        return "none"
    faults = section["faults"] or "each to every recipient once"
    return (
        f"{section['published']} published ({section['client_attempts']} attempts),"
        f" {section['recipients_each']} recipients each: {faults}"
    )


def run_sync(config: ChaosConfig, servers: Infra | ClusterInfra) -> dict[str, Any]:
    # ``kill`` stops a run as Ctrl-C does: every task is cancelled, so the services it started
    # are stopped too instead of being left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_chaos(config, servers))
    raise SystemExit(130)

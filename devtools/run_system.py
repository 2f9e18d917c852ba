"""``make run``: every service of the system as its own process, in the foreground.

Logs are readable in the terminal and kept in ``.run/logs/<service>.log``; a service that
crashes is restarted; Ctrl-C stops everything gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from devtools.broker_users import process_environment, provision_from_environment
from devtools.supervisor import ProcessSpec, Supervisor, python_module
from shared.manifest import metrics_ports, processes

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"


def metrics_env(name: str, metrics_ports: Mapping[str, int]) -> dict[str, str]:
    return {"METRICS_PORT": str(metrics_ports[name])} if name in metrics_ports else {}


def system_environment(environ: Mapping[str, str], run_dir: Path = RUN) -> dict[str, str]:
    """Defaults for a local run; whatever the caller set wins."""
    defaults = {
        "BLOB_DIR": str(run_dir / "blobs"),
        "MAIL_DIR": str(run_dir / "mail"),
        "PSP_DATA_DIR": str(run_dir / "psp"),
        "API_PORT": "8000",
        "PSP_PORT": "8100",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "1025",
    }
    env = {**defaults, **environ}
    env.setdefault("API_PUBLIC_URL", f"http://127.0.0.1:{env['API_PORT']}")
    env.setdefault("PSP_URL", f"http://127.0.0.1:{env['PSP_PORT']}")
    return env


# The consumers yield the CPU to the API and the relay when the machine is busy: on one
# machine a burst of submissions is answered (and published) first and the backlog drains
# behind it, as it does when the API has machines of its own. Idle CPU is theirs in full.
CONSUMER_NICE = 10


def system_processes(
    environ: Mapping[str, str], ports: Mapping[str, int] | None = None
) -> list[ProcessSpec]:
    """Every process of the manifest, and the sandbox and SMTP catcher standing in for the
    world outside. Each worker serves Prometheus /metrics on ``ports`` (by default the
    manifest's; the API on its HTTP port; the sandbox and the SMTP catcher have none)."""
    ports = metrics_ports() if ports is None else ports
    specs = []
    if "SMTP_HOST" not in environ and "SMTP_PORT" not in environ:
        specs.append(python_module("smtp", "devtools.smtp_catcher"))  # the user's SMTP replaces it
    specs.append(python_module("sandbox", "services.payments.sandbox"))
    specs += [
        python_module(
            process.name,
            process.module,
            metrics_env(process.name, ports),
            nice=CONSUMER_NICE if process.consumes_queues else 0,
        )
        for process in processes()
    ]
    return specs


def with_broker_logins(specs: list[ProcessSpec], env: Mapping[str, str]) -> list[ProcessSpec]:
    """Each service process logs in to RabbitMQ as its own user (``devtools.broker_users``),
    never as the administrator of ``env["RABBITMQ_URL"]``."""
    return [
        ProcessSpec(
            spec.name, spec.argv, {**spec.env, **process_environment(spec.name, env)}, spec.nice
        )
        for spec in specs
    ]


def banner(
    env: Mapping[str, str],
    smtp_caught: bool,
    ports: Mapping[str, int] | None = None,
) -> str:
    ports = metrics_ports() if ports is None else ports
    api = env["API_PUBLIC_URL"]
    management = env.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672/")
    autopay = "on" if env.get("PSP_AUTOPAY") == "1" else "off"
    mail = f"in {env['MAIL_DIR']} (one .eml per message)" if smtp_caught else "sent to your SMTP"
    lines = [
        "",
        "Admissions is running. Ctrl-C stops everything.",
        f"  API              {api}   (OpenAPI docs: {api}/docs)",
        f"  RabbitMQ UI      {management}   login {env.get('RABBITMQ_MANAGEMENT_USER', 'guest')}"
        f" / {env.get('RABBITMQ_MANAGEMENT_PASSWORD', 'guest')}",
        f"  Payment sandbox  {env['PSP_URL']}   (auto-pay {autopay})",
        f"  Mail             SMTP {env['SMTP_HOST']}:{env['SMTP_PORT']}, {mail}",
        f"  Admin login      {env.get('ADMIN_EMAIL', 'admin@example.org')} / "
        f"{env.get('ADMIN_PASSWORD', 'admin-dev-password')}",
        f"  Metrics          {api}/metrics; workers http://127.0.0.1:<port>/metrics: "
        + ", ".join(f"{name} {port}" for name, port in ports.items()),
        f"  Logs             {RUN / 'logs'}/<service>.log",
        "",
    ]
    return "\n".join(lines)


async def run() -> None:
    env = system_environment(os.environ)
    await provision_from_environment(env)
    specs = with_broker_logins(system_processes(os.environ), env)
    supervisor = Supervisor(specs, RUN / "logs", echo=sys.stdout, base_env=env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await supervisor.start()
    print(banner(env, smtp_caught=any(s.name == "smtp" for s in specs)), flush=True)
    await stop.wait()
    print("stopping every service ...", flush=True)
    await supervisor.stop()
    print("stopped.", flush=True)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()

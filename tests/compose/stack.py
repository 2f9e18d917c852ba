"""The system under docker compose, as ``make compose-up`` starts it, on host ports of its own.

The tests' compose project has its own name and publishes every port on a free one, so it
never meets the local servers of ``make infra`` (5672, 5432, ...) nor a developer's own
``make compose-up`` (project ``admissions``). Name and app image carry a hash of the checkout's
path: two checkouts sharing one engine test their own code, side by side.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devtools.servers.envfile import ROOT
from devtools.servers.envfile import read as read_env_file
from devtools.system import free_ports

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
# What scripts/compose.sh up chose (engine, images): every later compose command needs it, or
# compose would see another configuration and re-create the containers.
COMPOSE_ENV = ROOT / ".run" / "compose.env"
CHECKOUT = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
PROJECT = f"admissions-test-{CHECKOUT}"
# Host port variables of deploy/compose.yaml.
PORT_VARIABLES = (
    "API_HOST_PORT",
    "PSP_HOST_PORT",
    "MAIL_WEB_PORT",
    "INFRA_AMQP_PORT",
    "INFRA_MGMT_PORT",
    "INFRA_PG_PORT",
)
# Settings of the test project: a verifier that takes seconds (several applications in flight
# at once), a provider that waits for the applicant to pay, nothing left behind by compose-down.
SETTINGS = {
    "APP_IMAGE": f"admissions-app:test-{CHECKOUT}",
    "VERIFY_SIMULATED_MS": "2000",
    "PSP_AUTOPAY": "0",
    "COMPOSE_DOWN_ARGS": "--volumes",
}


@dataclass
class ComposeStack:
    ports: dict[str, int]
    log_dir: Path
    project: str = PROJECT
    settings: dict[str, str] = field(default_factory=lambda: dict(SETTINGS))

    @classmethod
    def on_free_ports(cls, log_dir: Path) -> ComposeStack:
        return cls(dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True)), log_dir)

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[variable]}"

    @property
    def api(self) -> str:
        return self.url("API_HOST_PORT")

    def environment(self, chosen: bool = True) -> dict[str, str]:
        """The variables compose interpolates; ``chosen``: with what ``up`` chose."""
        env = dict(os.environ)
        if chosen:
            env.update(read_env_file(COMPOSE_ENV))
        env.update({name: str(port) for name, port in self.ports.items()})
        env.update(self.settings)
        env["COMPOSE_PROJECT_NAME"] = self.project
        # Links handed to the applicant (pay link, checkout page) must work from this host.
        env["API_PUBLIC_URL"] = self.api
        env["PSP_PUBLIC_URL"] = self.url("PSP_HOST_PORT")
        return env

    def make(self, target: str, timeout: float = 1200) -> None:
        """``make TARGET`` with this project's settings; its output goes to a log file."""
        log = self.log_dir / f"make-{target}.log"
        with log.open("ab") as output:
            done = subprocess.run(
                ["make", "--no-print-directory", target],
                cwd=ROOT,
                env=self.environment(chosen=False),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"make {target} failed ({done.returncode}); {log}:\n{tail}")

    def compose(self, *args: str, timeout: float = 600) -> str:
        """``docker compose -f deploy/compose.yaml ARGS``; its standard output."""
        done = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), *args],
            cwd=ROOT,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def containers(self, service: str) -> list[str]:
        """Ids of the service's running containers."""
        return self.compose("ps", "--quiet", "--status", "running", service).split()

    def all_containers(self) -> list[str]:
        """Every container of the project, running or not (docker, not compose: compose only
        knows the services of the file)."""
        done = subprocess.run(
            [
                "docker",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.split()

    def logs(self, container: str) -> str:
        done = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=True
        )
        return done.stdout + done.stderr


def docker(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout

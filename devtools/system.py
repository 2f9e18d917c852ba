"""The whole system as processes, for end-to-end tests and chaos runs, isolated from anything
else running.

It gets its own RabbitMQ virtual host and its own Postgres database on the test servers, free
ports, and a temporary folder for blobs, mail and logs; every process writes its output to
``<folder>/logs/<name>.log``. ``make run``'s own process list and environment are reused, so
the tests run what a developer runs.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devtools.broker_users import provision_from_environment
from devtools.run_system import ROOT, system_environment, system_processes, with_broker_logins
from devtools.supervisor import Supervisor
from shared.control import control_queue_prefix
from shared.manifest import SERVICES, metrics_ports
from shared.system_topology import SYSTEM_TOPOLOGY


class Infra(Protocol):
    """Where the servers are (``tests.support.infra.Infra`` or the chaos run's own)."""

    @property
    def rabbitmq_url(self) -> str: ...
    @property
    def database_url(self) -> str: ...
    @property
    def management_url(self) -> str | None: ...
    @property
    def management_user(self) -> str: ...
    @property
    def management_password(self) -> str: ...


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (the kernel's choice), all different: each stays bound
    until all are chosen (one at a time, the kernel may hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for listener in sockets:
            listener.bind(("127.0.0.1", 0))
        return [int(listener.getsockname()[1]) for listener in sockets]
    finally:
        for listener in sockets:
            listener.close()


@dataclass
class RunningSystem:
    infra: Infra
    folder: Path
    overrides: Mapping[str, str]
    # Names the vhost and the database: e2e_<hex>, chaos_<hex>.
    prefix: str = "e2e"

    async def start(self) -> None:
        self.name = f"{self.prefix}_{uuid.uuid4().hex[:8]}"
        self.rabbitmq_url = await self._create_vhost()
        self.database_url = await self._create_database()
        workers = metrics_ports()
        ports = free_ports(3 + len(workers))
        self.api_port, self.psp_port, self.smtp_port = ports[:3]
        # every worker's /metrics on a port of its own: {"relay": port, ...}
        self.metrics_ports = dict(zip(workers, ports[3:], strict=True))
        self.env = system_environment(
            {
                "RABBITMQ_URL": self.rabbitmq_url,
                "DATABASE_URL": self.database_url,
                "API_PORT": str(self.api_port),
                "PSP_PORT": str(self.psp_port),
                "LOG_LEVEL": "INFO",
                "PSP_AUTOPAY": "1",
                # The tests, chaos runs and benchmarks send everything from one address, often
                # as one applicant: the API's flood limits would refuse them (their own tests
                # run the API in-process: tests/security/test_floods.py).
                "RATE_LIMITS": "0",
                **self.overrides,
            },
            run_dir=self.folder,
        )
        self.env["SMTP_PORT"] = str(self.smtp_port)
        # The admin API reads queue statistics from the management API of the same broker.
        management, (user, password) = self._management()
        self.env.setdefault("RABBITMQ_MANAGEMENT_URL", management)
        self.env.setdefault("RABBITMQ_MANAGEMENT_USER", user)
        self.env.setdefault("RABBITMQ_MANAGEMENT_PASSWORD", password)
        self._migrate()
        # the catcher is started as make run starts it, on this system's own port
        await provision_from_environment(self.env)
        specs = with_broker_logins(system_processes({}, self.metrics_ports), self.env)
        self.supervisor = Supervisor(specs, self.folder / "logs", base_env=self._process_env())
        await self.supervisor.start()
        await self._wait_ready()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def psp(self) -> str:
        return f"http://127.0.0.1:{self.psp_port}"

    @property
    def mail_dir(self) -> Path:
        return Path(self.env["MAIL_DIR"])

    async def restart(self, name: str, **env: str) -> None:
        """Restart one process with changed settings (e.g. a failing payment provider)."""
        self.env.update(env)
        self.supervisor.base_env = self._process_env()
        old_pid = self.supervisor.pid(name)
        self.supervisor.kill(name)
        deadline = time.monotonic() + 30
        while self.supervisor.pid(name) in (None, old_pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} was not restarted")
            await asyncio.sleep(0.1)
        await self._wait_ready()

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self._drop()

    def _process_env(self) -> dict[str, str]:
        import os

        return {**os.environ, **self.env}

    def _migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "shared.db.migrate"],  # every service of the manifest
            env=self._process_env(),
            cwd=ROOT,
            check=True,
            stdout=(self.folder / "migrate.log").open("wb"),
            stderr=subprocess.STDOUT,
            timeout=120,
        )

    async def _wait_ready(self, timeout: float = 90) -> None:
        """Until the API and the sandbox answer and every consuming process listens for
        control commands (a pause sent earlier would find no listener, or miss a late one).
        On timeout the error says what was still missing, and what the logs say about it."""
        deadline = time.monotonic() + timeout
        missing = ["nothing checked yet"]
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                missing = await self._not_ready(client)
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(self._not_ready_report(missing))
                await asyncio.sleep(0.3)

    async def _not_ready(self, client: httpx.AsyncClient) -> list[str]:
        """What the system still lacks to be ready; empty when it is."""
        missing: list[str] = []
        for name, url in (
            ("api /readyz", f"{self.api}/readyz"),
            ("sandbox", f"{self.psp}/v1/payments"),
        ):
            try:
                answer = await client.get(url)
            except httpx.HTTPError as error:
                missing.append(f"{name}: {type(error).__name__}")
                continue
            if answer.status_code != 200:
                missing.append(f"{name}: {answer.status_code} {answer.text[:200]}")
        if not missing:
            missing.extend(f"{name}: no control queue bound" for name in await self._deaf())
        return missing

    def _not_ready_report(self, missing: list[str]) -> str:
        restarts = {name: self.supervisor.restarts(name) for name in self.supervisor.names()}
        lines = [f"the system did not become ready; logs in {self.folder}", *missing]
        lines.append(f"restarts: {restarts}")
        for log in sorted((self.folder / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-8:]
            lines += [f"--- {log.name} (last lines)", *tail]
        return "\n".join(lines)

    async def _deaf(self) -> list[str]:
        """The services with queues that have no control queue bound to the control exchange
        yet (all of them while the management API does not answer)."""
        consumers = [service.name for service in SERVICES if service.queues]
        base, auth = self._management()
        exchange = quote(SYSTEM_TOPOLOGY.exchanges.control, safe="")
        url = f"{base}/api/exchanges/{quote(self.name, safe='')}/{exchange}/bindings/source"
        try:
            async with httpx.AsyncClient(auth=auth, timeout=5) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return consumers
        if response.status_code != 200:
            return consumers
        bound = [str(binding["destination"]) for binding in response.json()]
        return [
            name
            for name in consumers
            if not any(queue.startswith(control_queue_prefix(name)) for queue in bound)
        ]

    def _management(self) -> tuple[str, tuple[str, str]]:
        base = self.infra.management_url or "http://127.0.0.1:15672/"
        return base.rstrip("/"), (self.infra.management_user, self.infra.management_password)

    async def _create_vhost(self) -> str:
        base, auth = self._management()
        user = urlsplit(self.infra.rabbitmq_url).username or "guest"
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            (await client.put(f"{base}/api/vhosts/{self.name}")).raise_for_status()
            permissions = {"configure": ".*", "write": ".*", "read": ".*"}
            url = f"{base}/api/permissions/{self.name}/{quote(user)}"
            (await client.put(url, json=permissions)).raise_for_status()
        parts = urlsplit(self.infra.rabbitmq_url)
        return urlunsplit(parts._replace(path=f"/{self.name}"))

    async def _create_database(self) -> str:
        async with await psycopg.AsyncConnection.connect(
            self.infra.database_url, autocommit=True
        ) as admin:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        params = conninfo_to_dict(self.infra.database_url)
        params["dbname"] = self.name
        return _as_url(make_conninfo(**params))  # type: ignore[arg-type]

    async def _drop(self) -> None:
        base, auth = self._management()
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            await client.delete(f"{base}/api/vhosts/{self.name}")
        async with await psycopg.AsyncConnection.connect(
            self.infra.database_url, autocommit=True
        ) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def _as_url(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.get("user", "")))
    password = quote(str(params.get("password", "")))
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    return f"postgresql://{user}:{password}@{host}:{port}/{params['dbname']}"

"""The commands of ``python3 -m devtools.servers`` (see the package's docstring)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

from devtools import servers
from devtools.servers import envfile, postgres, rabbitmq
from devtools.servers.envfile import ENV_FILE, ROOT, RUN_DIR
from devtools.servers.host import (
    ServerError,
    install_debian_packages,
    require_port_free,
    say,
    tcp_open,
    wait_until,
    warn,
)
from devtools.servers.postgres import PostgresServer
from devtools.servers.rabbitmq import RabbitNode

EXTERNAL_TIMEOUT = 60
MODES = ("external", "local", "docker")


@contextmanager
def exclusive() -> Iterator[None]:
    """One ``up``/``down``/fault command at a time (parallel test jobs): two would start two
    nodes on the same data. The servers never inherit the lock (``close_fds``)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / ".lock", "w") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"another infra command is still running (lock {lock.name})"
                    ) from None
                time.sleep(0.5)
        yield


def _environ() -> dict[str, str]:
    return dict(os.environ)


def _pg_port() -> int:
    return int(os.environ.get("INFRA_PG_PORT", "5432"))


def _recorded_mode() -> str:
    return envfile.read().get("INFRA_MODE", "")


def record(mode: str, amqp: str, database: str, management: str, user: str, password: str) -> None:
    envfile.write(
        {
            "INFRA_MODE": mode,
            "RABBITMQ_URL": amqp,
            "DATABASE_URL": database,
            "RABBITMQ_MANAGEMENT_URL": management,
            "RABBITMQ_MANAGEMENT_USER": user,
            "RABBITMQ_MANAGEMENT_PASSWORD": password,
        }
    )
    say(f"mode:       {mode}")
    say(f"RabbitMQ:   {amqp}")
    say(f"management: {management} (user {user})")
    say(f"Postgres:   {database}")
    say(f"env file:   {ENV_FILE}   (source it, or: scripts/infra.sh env)")


# --- the three modes -----------------------------------------------------------------------


def up_external() -> None:
    amqp, database = os.environ["RABBITMQ_URL"], os.environ["DATABASE_URL"]
    say("external mode: using RABBITMQ_URL and DATABASE_URL from the environment")
    broker = urlsplit(amqp)
    default_port = 5671 if broker.scheme == "amqps" else 5672
    if not broker.hostname:
        raise ServerError("cannot find a host in RABBITMQ_URL")
    _wait_reachable("RabbitMQ", broker.hostname, broker.port or default_port)
    # a multi-host Postgres URL: the first host is checked
    db_host = urlsplit(database.split(",")[0]).hostname
    if db_host:
        _wait_reachable("PostgreSQL", db_host, urlsplit(database.split(",")[0]).port or 5432)
    else:
        warn("DATABASE_URL has no TCP host (unix socket?); not checked")
    # The management API: as the environment says, else the AMQP URL's host and credentials.
    host = f"[{broker.hostname}]" if ":" in broker.hostname else broker.hostname
    management = os.environ.get("RABBITMQ_MANAGEMENT_URL") or f"http://{host}:15672/"
    user = os.environ.get("RABBITMQ_MANAGEMENT_USER", "")
    password = os.environ.get("RABBITMQ_MANAGEMENT_PASSWORD", "")
    if not user:
        user = unquote(broker.username or "guest")
        password = password or unquote(broker.password or ("guest" if not broker.username else ""))
    record("external", amqp, database, management, user, password)


def _wait_reachable(what: str, host: str, port: int) -> None:
    if not wait_until(lambda: tcp_open(host, port), EXTERNAL_TIMEOUT, every=1):
        raise ServerError(
            f"{what} at {host}:{port} does not accept connections after {EXTERNAL_TIMEOUT}s"
        )


def compose(*arguments: str, environ: dict[str, str] | None = None) -> None:
    """docker compose with the engine and images ``scripts/compose.sh`` chose."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "compose.sh"), *arguments],
        env=environ,
        stdin=subprocess.DEVNULL,
        check=True,
    )


def up_docker() -> None:
    amqp_port = os.environ.get("INFRA_AMQP_PORT", "5672")
    management_port = os.environ.get("INFRA_MGMT_PORT", "15672")
    say("docker mode: scripts/compose.sh up rabbitmq postgres")
    compose(
        "up",
        "rabbitmq",
        "postgres",
        environ={
            **os.environ,
            "INFRA_AMQP_PORT": amqp_port,
            "INFRA_MGMT_PORT": management_port,
            "INFRA_PG_PORT": str(_pg_port()),
        },
    )
    record(
        "docker",
        f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        postgres.url(_pg_port()),
        f"http://127.0.0.1:{management_port}/",
        "guest",
        "guest",
    )


def up_local() -> None:
    say(f"local mode: RabbitMQ and PostgreSQL as processes, state in {RUN_DIR}")
    missing = [
        package
        for package, present in (
            ("rabbitmq-server", rabbitmq.installed()),
            ("postgresql", postgres.installed()),
        )
        if not present
    ]
    install_debian_packages(missing)
    node = RabbitNode.of_project(_environ())
    database = PostgresServer(_pg_port())
    # Every port checked first, so that a conflict leaves no server half-started.
    if not node.running():
        node.check_ports()
    database.prepare_folders()
    if not database.running():
        require_port_free(database.port, "PostgreSQL", "INFRA_PG_PORT")
    node.start()
    database.start()
    record(
        "local",
        f"amqp://guest:guest@127.0.0.1:{node.ports.amqp}/",
        database.url,
        f"http://127.0.0.1:{node.ports.management}/",
        "guest",
        "guest",
    )


# --- commands ------------------------------------------------------------------------------


def up() -> None:
    started = time.monotonic()
    mode = os.environ.get("INFRA_MODE") or (
        "external" if os.environ.get("RABBITMQ_URL") and os.environ.get("DATABASE_URL") else "local"
    )
    if mode not in MODES:
        raise ServerError(f"unknown INFRA_MODE {mode!r} (expected external, docker or local)")
    with exclusive():
        if mode == "external":
            if not (os.environ.get("RABBITMQ_URL") and os.environ.get("DATABASE_URL")):
                raise ServerError("INFRA_MODE=external needs both RABBITMQ_URL and DATABASE_URL")
            up_external()
        elif mode == "docker":
            up_docker()
        else:
            up_local()
    say(f"ready in {time.monotonic() - started:.0f}s")


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def down() -> None:
    with exclusive():
        mode = _recorded_mode()
        if mode == "docker":
            if _docker_answers():
                say("docker mode: docker compose -f deploy/compose.yaml stop rabbitmq postgres")
                compose("run", "stop", "rabbitmq", "postgres")
            else:
                warn("recorded mode is docker but no Docker engine answers; nothing stopped there")
        elif mode == "external":
            say("external mode: nothing to stop")
        # Local servers are ours whatever mode was recorded last: stopped if alive.
        if (RUN_DIR / "rabbitmq").is_dir():
            RabbitNode.of_project(_environ()).stop()
        if (RUN_DIR / "postgres").is_dir() and postgres.installed():
            PostgresServer(_pg_port()).stop()


def status() -> None:
    recorded = envfile.read()
    mode = recorded.get("INFRA_MODE", "")
    print(f"mode (last up): {mode or 'none (run scripts/infra.sh up)'}")
    if mode == "docker":
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "compose.sh"), "run", "ps", "rabbitmq", "postgres"],
            check=False,
        )
    elif mode == "external":
        print(f"RABBITMQ_URL={recorded.get('RABBITMQ_URL', '')}")
        print(f"DATABASE_URL={recorded.get('DATABASE_URL', '')}")
    if (RUN_DIR / "rabbitmq").is_dir():
        node = RabbitNode.of_project(_environ())
        if node.running():
            print(
                f"rabbitmq: running  pids {node.pids()}  node {node.name}"
                f"  amqp 127.0.0.1:{node.ports.amqp}  management 127.0.0.1:{node.ports.management}"
                f"  listening: {'yes' if node.listening() else 'no'}"
            )
        else:
            print(f"rabbitmq: stopped  (state in {node.base})")
    if (RUN_DIR / "postgres").is_dir() and postgres.installed():
        database = PostgresServer(_pg_port())
        if database.running():
            port = database.running_port()
            listening = "yes" if port and tcp_open("127.0.0.1", port) else "no"
            print(
                f"postgres: running  pid {database.pid()}  127.0.0.1:{port}  data {database.data}"
                f"  listening: {listening}"
            )
        else:
            print(f"postgres: stopped  (data {database.data})")


def show_env() -> None:
    if not ENV_FILE.exists():
        raise ServerError(f"{ENV_FILE} does not exist; run scripts/infra.sh up")
    print(ENV_FILE.read_text(), end="")


def fault(action: str, server: str) -> None:
    """Chaos runs break the servers on purpose: only those that ``up`` started."""
    with exclusive():
        mode = _recorded_mode()
        if mode == "docker":
            say(f"docker mode: docker compose -f deploy/compose.yaml {action} {server}")
            compose("run", action, server)
            if action != "stop":
                compose("run", "up", "-d", "--wait", server)
        elif mode != "local":
            raise ServerError(
                f"{action}-{server} needs the servers of local or docker mode"
                f" (recorded mode: {mode or 'none'})"
            )
        elif server == "postgres":
            PostgresServer(_pg_port()).restart()
        else:
            node = RabbitNode.of_project(_environ())
            if action != "start":
                node.stop()
            if action != "stop":
                node.start()


def rabbitmqctl(arguments: list[str]) -> int:
    """The real ``rabbitmqctl`` against the project's node, its output as it comes."""
    tool = rabbitmq.find_tool("rabbitmqctl")
    if tool is None:
        raise ServerError(
            "RabbitMQ is not installed here (no /usr/lib/rabbitmq/{sbin,bin}/"
            "rabbitmqctl); run scripts/infra.sh up first"
        )
    node = RabbitNode.of_project(_environ())
    if not node.home.is_dir():
        raise ServerError(f"no local node state in {node.base}; run scripts/infra.sh up first")
    return subprocess.run([tool, *arguments], env=node.environment(), check=False).returncode


COMMANDS: dict[str, Callable[[], None]] = {
    "up": up,
    "down": down,
    "status": status,
    "env": show_env,
    "restart-rabbitmq": lambda: fault("restart", "rabbitmq"),
    "stop-rabbitmq": lambda: fault("stop", "rabbitmq"),
    "start-rabbitmq": lambda: fault("start", "rabbitmq"),
    "restart-postgres": lambda: fault("restart", "postgres"),
}


def main(arguments: list[str]) -> int:
    command = arguments[0] if arguments else ""
    try:
        if command == "rabbitmqctl":
            return rabbitmqctl(arguments[1:])
        if command not in COMMANDS:
            asked = command in ("-h", "--help", "help")
            print(servers.__doc__, file=sys.stdout if asked else sys.stderr)
            return 0 if asked else 2
        COMMANDS[command]()
    except ServerError as error:
        print(f"[infra] ERROR: {error}", file=sys.stderr)
        return 1
    return 0

"""A RabbitMQ node of the project's own: a plain process, its state under one folder.

The node and its command-line tools must agree on the node name, the Erlang cookie (HOME)
and the folders, or the tools cannot talk to the node: ``environment()`` is that agreement,
used to start the node and to run ``rabbitmqctl`` against it. The scripts under
``/usr/lib/rabbitmq`` are used, never Debian's ``/usr/sbin/rabbitmqctl``, which switches to the
``rabbitmq`` user, resets the environment and would talk to the (absent) system node.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.servers.envfile import RUN_DIR, write_atomically
from devtools.servers.host import (
    ServerError,
    command_line,
    pid_alive,
    read_pid,
    require_port_free,
    run_quietly,
    say,
    spawn_detached,
    stop_pid,
    tcp_open,
    wait_until,
    warn,
)

START_TIMEOUT = 90
PLUGINS = "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_shovel,rabbitmq_shovel_management].\n"
_BIN_FOLDERS = ("/usr/lib/rabbitmq/sbin", "/usr/lib/rabbitmq/bin")
_LOOPBACK_DISTRIBUTION = "-kernel inet_dist_use_interface {127,0,0,1}"
# How long a quorum queue's at-least-once dead-lettering (the retry tiers) waits before it
# sends a message again: when the target queue's confirm did not come, or when the target
# exchange was not there yet (a node that has just booted can expire messages before it has
# recovered its exchanges: in a chaos run a retry was held up that way). RabbitMQ's default
# is 3 minutes; a resend is at worst a duplicate, which the consumers skip by message id.
# deploy/rabbitmq/advanced.config sets the same for compose.
DEAD_LETTER_CONFIRM_MS = 15000


def advanced_config_text(kernel: str = "") -> str:
    """The node's advanced.config: what rabbitmq.conf cannot say, and Erlang's own settings
    (``kernel``: the terms of the kernel application, e.g. a cluster's ticks)."""
    rabbit = (
        f"{{rabbit, [{{dead_letter_worker_publisher_confirm_timeout, {DEAD_LETTER_CONFIRM_MS}}}]}}"
    )
    return f"[{{kernel, [{kernel}]}}, {rabbit}].\n" if kernel else f"[{rabbit}].\n"


def find_tool(name: str) -> str | None:
    folders = [
        *_BIN_FOLDERS,
        *map(str, Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin")),
    ]
    return next(
        (f"{folder}/{name}" for folder in folders if os.access(f"{folder}/{name}", os.X_OK)), None
    )


def installed() -> bool:
    return os.access("/usr/lib/rabbitmq/bin/rabbitmq-server", os.X_OK)


@dataclass(frozen=True)
class Ports:
    amqp: int = 5672
    management: int = 15672
    prometheus: int = 15692

    @property
    def distribution(self) -> int:
        return self.amqp + 20000  # RabbitMQ's own rule

    @classmethod
    def chosen(cls, base: Path, environ: dict[str, str]) -> Ports:
        """Explicit ``INFRA_*`` settings win; then what the last ``up`` recorded (so that the
        fault commands and ``rabbitmqctl`` find the node without them); then the defaults."""
        recorded = cls.recorded(base) or cls()
        return cls(
            int(environ.get("INFRA_AMQP_PORT", recorded.amqp)),
            int(environ.get("INFRA_MGMT_PORT", recorded.management)),
            int(environ.get("INFRA_PROM_PORT", recorded.prometheus)),
        )

    @classmethod
    def recorded(cls, base: Path) -> Ports | None:
        try:
            return cls(**json.loads((base / "ports.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


class RabbitNode:
    """One node. ``home`` holds the Erlang cookie (nodes of one cluster share it);
    ``extra_config`` adds to the generated rabbitmq.conf (a cluster's partition handling) and
    ``advanced_config`` replaces the default advanced.config (a cluster's ticks)."""

    def __init__(
        self,
        base: Path,
        ports: Ports,
        name: str | None = None,
        *,
        home: Path | None = None,
        extra_config: str = "",
        advanced_config: str = "",
    ) -> None:
        self.base = base
        self.ports = ports
        # One node per AMQP port: a second checkout on other ports (sharing this machine's
        # epmd) gets a node name of its own instead of a clash.
        self.name = name or (
            "admissions@localhost" if ports.amqp == 5672 else f"admissions-{ports.amqp}@localhost"
        )
        self.logs = base / "log"
        self.home = home or base / "home"
        self.extra_config = extra_config
        self.advanced_config = advanced_config or advanced_config_text()
        self.launcher_pid_file = base / "pid"  # the rabbitmq-server we launched
        self.vm_pid_file = base / "beam.pid"  # the Erlang VM, written by RabbitMQ itself

    @classmethod
    def of_project(cls, environ: dict[str, str]) -> RabbitNode:
        base = RUN_DIR / "rabbitmq"
        return cls(base, Ports.chosen(base, environ))

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # the node's own variables must not be shadowed by a caller's
            if key not in ("RABBITMQ_ENV_LOADED", "RABBITMQ_USE_LONGNAME", "RABBITMQ_LOGS")
        }
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.ports.amqp),
            RABBITMQ_DIST_PORT=str(self.ports.distribution),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.logs),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            # absent on purpose, and an empty env file: /etc/rabbitmq stays out
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.vm_pid_file),
            # epmd and the distribution listeners (node and tools) on loopback only
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=_LOOPBACK_DISTRIBUTION,
            RABBITMQ_CTL_ERL_ARGS=_LOOPBACK_DISTRIBUTION,
        )
        return env

    # --- state ---------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return [
            pid
            for pid in (read_pid(self.launcher_pid_file), read_pid(self.vm_pid_file))
            if pid is not None
        ]

    def running(self) -> bool:
        """The process we launched (or its VM) is alive and really RabbitMQ (not a recycled
        pid)."""
        return any(pid_alive(pid) and "rabbit" in command_line(pid) for pid in self.pids())

    def listening(self) -> bool:
        return tcp_open("127.0.0.1", self.ports.amqp)

    def ctl(self, *arguments: str, timeout: float = 60) -> int:
        tool = find_tool("rabbitmqctl")
        if tool is None:
            raise ServerError("rabbitmqctl not found under /usr/lib/rabbitmq")
        return run_quietly(
            [tool, "-q", *arguments], env=self.environment(), timeout=timeout
        ).returncode

    # --- start and stop ------------------------------------------------------------------

    def check_ports(self) -> None:
        require_port_free(self.ports.amqp, "RabbitMQ AMQP", "INFRA_AMQP_PORT")
        require_port_free(self.ports.management, "RabbitMQ management", "INFRA_MGMT_PORT")
        require_port_free(self.ports.prometheus, "RabbitMQ Prometheus", "INFRA_PROM_PORT")
        require_port_free(
            self.ports.distribution, "Erlang distribution, AMQP port + 20000", "INFRA_AMQP_PORT"
        )

    def start(self) -> None:
        """Start the node unless it runs, and wait until it has booted."""
        if self.running():
            self._already_running()
            return
        self.check_ports()
        self.write_config()
        ensure_epmd(self.base)
        self.wait_started(self.launch())
        say(
            f"RabbitMQ started (pid {read_pid(self.launcher_pid_file)},"
            f" VM pid {read_pid(self.vm_pid_file)})"
        )

    def launch(self) -> int:
        """Start the node detached and return at once (a cluster's nodes boot together)."""
        server = find_tool("rabbitmq-server")
        if server is None:
            raise ServerError("rabbitmq-server not found under /usr/lib/rabbitmq")
        for stale in (self.launcher_pid_file, self.vm_pid_file):
            stale.unlink(missing_ok=True)
        say(
            f"starting RabbitMQ (node {self.name}, AMQP {self.ports.amqp},"
            f" management {self.ports.management})"
        )
        # cwd: erl_crash.dump and other stray files land in the node's folder
        pid = spawn_detached(
            [server], log=self.logs / "server.out", cwd=self.base, env=self.environment()
        )
        self.launcher_pid_file.write_text(f"{pid}\n")
        return pid

    def _already_running(self) -> None:
        recorded = Ports.recorded(self.base)
        if recorded is not None and recorded != self.ports:
            raise ServerError(
                f"our RabbitMQ already runs on ports {recorded.amqp}/{recorded.management};"
                " run 'scripts/infra.sh down' before changing INFRA_AMQP_PORT/INFRA_MGMT_PORT"
            )
        if self.listening():
            say(f"RabbitMQ already running (pids {self.pids()}, port {self.ports.amqp})")
        else:
            say("RabbitMQ process is up but not yet listening; waiting")
            self.wait_started(self.pids()[0])

    def write_config(self) -> None:
        for folder in (self.base / "mnesia", self.logs, self.home):
            folder.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)  # the Erlang cookie lives here
        (self.base / "rabbitmq-env.conf").write_text("")
        write_atomically(self.base / "enabled_plugins", PLUGINS)
        write_atomically(
            self.base / "rabbitmq.conf",
            "# Generated by devtools.servers (local mode); rewritten on every 'up'.\n"
            "# Loopback only: guest/guest works because clients connect via 127.0.0.1.\n"
            f"listeners.tcp.1 = 127.0.0.1:{self.ports.amqp}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.ports.management}\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {self.ports.prometheus}\n{self.extra_config}",
        )
        write_atomically(self.base / "advanced.config", self.advanced_config)
        write_atomically(self.base / "ports.json", json.dumps(asdict(self.ports)) + "\n")

    def wait_started(self, launcher: int) -> None:
        def listening_or_dead() -> bool:
            if not pid_alive(launcher):
                raise ServerError(
                    f"RabbitMQ exited during startup; see {self.logs}/server.out and"
                    f" {self.logs}/{self.name}.log"
                )
            return self.listening() and tcp_open("127.0.0.1", self.ports.management)

        if not wait_until(listening_or_dead, START_TIMEOUT, every=0.5):
            raise ServerError(
                f"RabbitMQ not reachable on ports {self.ports.amqp}/{self.ports.management}"
                f" after {START_TIMEOUT}s; see {self.logs}/ (if the app was stopped with"
                " stop_app: scripts/rabbitmqctl.sh start_app)"
            )
        # The listeners are up; the whole boot (every plugin) must have completed too.
        if self.ctl("await_startup", "--timeout", "30", timeout=45) != 0:
            raise ServerError(f"RabbitMQ did not finish booting; see {self.logs}/")

    def stop(self) -> None:
        if not self.running():
            for stale in (self.launcher_pid_file, self.vm_pid_file):
                stale.unlink(missing_ok=True)
            say("RabbitMQ: not running")
        else:
            pids = self.pids()
            say(f"stopping RabbitMQ (pids {pids})")
            if self.ctl("stop", timeout=60) != 0:
                warn("rabbitmqctl stop failed; falling back to signals")
            # The VM and its launcher exit on their own after `stop`; signals for what stays.
            for pid in reversed(pids):
                stop_pid(pid)
            for stale in (self.launcher_pid_file, self.vm_pid_file):
                stale.unlink(missing_ok=True)
            say("RabbitMQ stopped")
        stop_epmd_if_ours(self.base)


# --- epmd: the Erlang port mapper, shared by every Erlang node of the machine ----------------


def _epmd() -> str | None:
    found = shutil.which("epmd")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))
    return str(candidates[-1]) if candidates else None


def _epmd_port() -> int:
    return int(os.environ.get("ERL_EPMD_PORT", "4369"))


def ensure_epmd(base: Path) -> None:
    """Start epmd ourselves when none runs, so that ``down`` knows it may stop it."""
    epmd = _epmd()
    if tcp_open("127.0.0.1", _epmd_port()) or epmd is None:  # else the VM starts its own
        return
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    if run_quietly([epmd, "-daemon"], env=env).returncode == 0:
        (base / "epmd.started-by-infra").touch()


def stop_epmd_if_ours(base: Path) -> None:
    """Only if we started it and no Erlang node is registered any more."""
    marker = base / "epmd.started-by-infra"
    if not marker.exists():
        return
    epmd = _epmd()
    if epmd is None or not tcp_open("127.0.0.1", _epmd_port()):
        marker.unlink()
        return
    names = run_quietly([epmd, "-names"]).stdout
    if any(line.startswith("name ") for line in names.splitlines()):
        say("epmd left running: other Erlang nodes are registered")
        return
    run_quietly([epmd, "-kill"])
    marker.unlink()
    say("epmd stopped")

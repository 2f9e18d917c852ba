"""A three-node RabbitMQ cluster on this machine, for the cluster tests and the cluster chaos
run (``make chaos-cluster``), and the faults those need: a node killed, a node cut off from
the others, nodes cut off from the services.

``python -m devtools.cluster up | down | status | env | kill N | start N | restart N |
partition N | block-amqp N[,M] | heal`` (N = 1, 2, 3).

Each node is a local ``rabbitmq-server`` (Debian's package, as ``scripts/infra.sh`` uses) with
its own name, ports and folders under ``.run/cluster/node-N/``; the three share one Erlang
cookie (``.run/cluster/home``) and join the first with ``rabbitmqctl join_cluster``. Ports, for
the default base ``CLUSTER_AMQP_PORT=5681``: AMQP 5681-5683, management 15681-15683,
Prometheus 15701-15703, Erlang distribution 25681-25683 (RabbitMQ's own rule: AMQP + 20000).
Everything listens on 127.0.0.1 and logs to ``.run/cluster/node-N/log/``.

Partitions are made with iptables on loopback, in a chain of the cluster's own
(``ADMISSIONS-<base port>``) hooked into OUTPUT, so healing flushes only our rules. On loopback
every address is 127.0.0.1, so each node opens its distribution connections from an address
of its own (``127.0.0.1N``, through ``inet_dist_connect_options``): "node N's traffic with node
M" is then the packets between N's address and M's distribution port, and the reverse; the
CLI tools (from 127.0.0.1) still reach every node.

The cluster runs ``cluster_partition_handling = pause_minority``: a node that finds itself on
the minority side of a partition stops serving clients (it closes their connections and its
listeners) until it sees the majority again, so a client can only ever talk to the side that
can confirm a write to a quorum; quorum queues already refuse to confirm on a minority, and
pausing makes that side refuse connections at once instead of taking publishes it cannot
confirm. ``autoheal`` would keep both sides serving and restart the losers afterwards; for
quorum queues RabbitMQ recommends ``pause_minority``. ``net_ticktime`` is 10 s (default 60) so
that a partition is seen in 7-13 s, not a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

from devtools.servers.host import (
    install_debian_packages,
    is_root,
    pid_alive,
    read_pid,
    run_quietly,
    wait_until,
)
from devtools.servers.rabbitmq import (
    Ports,
    RabbitNode,
    advanced_config_text,
    ensure_epmd,
    find_tool,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / ".run" / "cluster"
SIZE = 3
# The ticks between nodes: a partition is seen after 0.75-1.25 of this (default 60 s).
NET_TICKTIME_SECONDS = 10
ADMIN = ("guest", "guest")
# Added to each node's generated rabbitmq.conf (devtools.servers.rabbitmq).
CLUSTER_CONFIG = """# devtools/cluster.py: the minority side of a partition stops serving.
cluster_partition_handling = pause_minority
# New quorum queues' leaders spread over the nodes instead of all on the declaring one.
queue_leader_locator = balanced
consumer_timeout = 900000
"""


class Node:
    """One node of the cluster: a ``devtools.servers`` RabbitMQ node (the same launch,
    configuration and tools as the single node of ``make infra``) with the cluster's
    settings, the shared cookie folder, and a distribution source address of its own."""

    def __init__(self, index: int, amqp_port: int, folder: Path, home: Path) -> None:
        self.index = index  # 1..SIZE
        self.amqp_port = amqp_port
        # Prometheus not on + 10010: 15692 is the single node's.
        ports = Ports(amqp_port, amqp_port + 10000, amqp_port + 10020)
        self.server = RabbitNode(
            folder,
            ports,
            f"rabbit-{amqp_port}@localhost",
            home=home,
            extra_config=CLUSTER_CONFIG,
            advanced_config=advanced_config(self),
        )

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def dist_port(self) -> int:
        return self.server.ports.distribution

    @property
    def management_port(self) -> int:
        return self.server.ports.management

    @property
    def prometheus_port(self) -> int:
        return self.server.ports.prometheus

    @property
    def address(self) -> str:
        """The source address of this node's distribution connections (see the module)."""
        return f"127.0.0.1{self.index}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def log_dir(self) -> Path:
        return self.server.logs


class ClusterError(RuntimeError):
    pass


class Cluster:
    def __init__(self, base_port: int | None = None, folder: Path = BASE) -> None:
        self.base_port = base_port or int(os.environ.get("CLUSTER_AMQP_PORT", "5681"))
        self.folder = folder
        self.home = folder / "home"  # the Erlang cookie the nodes and their tools share
        self.nodes = [
            Node(i, self.base_port + i - 1, folder / f"node-{i}", self.home)
            for i in range(1, SIZE + 1)
        ]
        self.chain = f"ADMISSIONS-{self.base_port}"

    # --- addresses -------------------------------------------------------------------------

    def node(self, index: int) -> Node:
        if not 1 <= index <= SIZE:
            raise ClusterError(f"no node {index}: the nodes are 1..{SIZE}")
        return self.nodes[index - 1]

    @property
    def nodes_setting(self) -> str:
        """``RABBITMQ_NODES`` for the services: every node's host:port."""
        return ",".join(f"127.0.0.1:{node.amqp_port}" for node in self.nodes)

    def amqp_url(self, vhost: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.nodes[0].amqp_port}/{vhost}"

    def environment(self) -> dict[str, str]:
        """What the services, tests and chaos run are given to use the cluster."""
        return {
            "RABBITMQ_URL": self.amqp_url(),
            "RABBITMQ_NODES": self.nodes_setting,
            "RABBITMQ_MANAGEMENT_URL": self.nodes[0].management_url + "/",
            "RABBITMQ_MANAGEMENT_USER": ADMIN[0],
            "RABBITMQ_MANAGEMENT_PASSWORD": ADMIN[1],
        }

    # --- the nodes' processes ---------------------------------------------------------------

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(os.urandom(16).hex().upper())
            cookie.chmod(0o400)
        for node in self.nodes:
            node.server.write_config()

    def pid(self, node: Node) -> int | None:
        """The node's Erlang VM, if it runs."""
        return read_pid(node.server.vm_pid_file) if node.server.running() else None

    def launch(self, node: Node) -> None:
        """Start the node detached; returns at once (a cluster's nodes boot together)."""
        if not node.server.running():
            ensure_epmd(self.folder)
            node.server.launch()

    def ctl(
        self, node: Node, *args: str, timeout: float = 60, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        path = find_tool(tool)
        if path is None:
            raise ClusterError(f"{tool} not found under /usr/lib/rabbitmq")
        return run_quietly(
            [path, "-n", node.name, *args], env=node.server.environment(), timeout=timeout
        )

    def await_startup(self, node: Node, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ctl(node, "-q", "await_startup", "--timeout", "10", timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise ClusterError(f"{node.name} did not start; see {node.log_dir}")

    def up(self) -> None:
        """Start the nodes that are not running (all at once: a node that was clustered waits
        for its peers at boot), join the new ones to the first, wait for all three."""
        require_iptables()
        self.write_config()
        for node in self.nodes:
            self.launch(node)
        for node in self.nodes:
            try:
                self.await_startup(node, timeout=120)
            except ClusterError:  # hung (see ``rejoin``): once more, from scratch
                self.kill(node)
                self.start(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if first.name not in self.cluster_status(node).get("disk_nodes", []):
                self.join(node, first)
        self.rejoin()

    def join(self, node: Node, to: Node) -> None:
        for args in (("stop_app",), ("join_cluster", to.name), ("start_app",)):
            done = self.ctl(node, *args, timeout=120)
            if done.returncode != 0:
                raise ClusterError(f"{node.name}: rabbitmqctl {' '.join(args)}: {done.stderr}")

    def cluster_status(self, node: Node) -> dict[str, list[str]]:
        done = self.ctl(node, "cluster_status", "--formatter", "json", timeout=30)
        if done.returncode != 0:
            return {}
        status: dict[str, list[str]] = json.loads(done.stdout)
        return status

    def running_nodes(self, seen_by: Node) -> list[str]:
        return list(self.cluster_status(seen_by).get("running_nodes", []))

    def wait_running(self, nodes: Sequence[Node], timeout: float = 180) -> None:
        """Until every node of ``nodes`` sees all of them running (a partition healed, a
        restarted node back)."""
        names = {node.name for node in nodes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(names <= set(self.running_nodes(node)) for node in nodes):
                return
            time.sleep(1)
        raise ClusterError(f"nodes {sorted(names)} do not all see each other running")

    def rejoin(self, timeout: float = 60) -> list[str]:
        """Wait until the cluster is whole again after a heal or a restart; a node that stays
        out is restarted (kill -9, start), as an operator must: after a partition, RabbitMQ
        3.x's membership (Mnesia, Erlang's ``global``) sometimes does not merge again, or the
        node hangs rejoining, while the quorum queues have long recovered. Returns the names
        of the nodes it had to restart."""
        try:
            self.wait_running(self.nodes, timeout)
            return []
        except ClusterError:
            pass
        views = {node.name: set(self.running_nodes(node)) for node in self.nodes}
        everyone = {node.name for node in self.nodes}
        outside = [node for node in self.nodes if views[node.name] != everyone]
        if len(outside) == len(self.nodes):  # nobody sees everyone: restart the smallest side
            smallest = min(len(view) for view in views.values())
            outside = [node for node in self.nodes if len(views[node.name]) == smallest]
        for node in outside:
            self.kill(node)
            self.start(node)
        self.wait_running(self.nodes)
        return [node.name for node in outside]

    def kill(self, node: Node) -> None:
        """kill -9 of the node's VM (and its launcher): no goodbye to peers or clients."""
        for pid in node.server.pids():
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_until(lambda pid=pid: not pid_alive(pid), 30)  # type: ignore[misc]

    def start(self, node: Node) -> None:
        self.launch(node)
        self.await_startup(node)

    def stop(self, node: Node) -> None:
        """``rabbitmqctl stop``, then signals for what stays (``RabbitNode.stop``)."""
        if node.server.running():
            node.server.stop()

    def restart(self, node: Node) -> list[str]:
        """A graceful restart, as an operator's rolling restart does it: first wait until no
        quorum queue would lose its majority without this node (its peers have caught up),
        then stop, start, and wait until the whole cluster runs again (returns what
        ``rejoin`` had to restart for that)."""
        self.wait_not_quorum_critical(node)
        self.stop(node)
        self.start(node)
        return self.rejoin()

    def wait_not_quorum_critical(self, node: Node, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check = self.ctl(node, "check_if_node_is_quorum_critical", tool="rabbitmq-queues")
            if check.returncode == 0:
                return
            time.sleep(2)
        raise ClusterError(f"{node.name} stays quorum-critical: a peer has not caught up")

    def down(self) -> None:
        self.heal(unhook=True)
        for node in self.nodes:
            self.stop(node)

    def wipe(self) -> None:
        """Stop and forget the cluster (its data and configuration)."""
        self.down()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- what the cluster holds -------------------------------------------------------------

    def leaders(self, reachable: Iterable[Node] | None = None) -> Counter[str]:
        """How many quorum queues each node leads, from the first node that answers."""
        for node in reachable or self.nodes:
            try:
                response = httpx.get(
                    f"{node.management_url}/api/queues",
                    params={"columns": "name,node,type"},
                    auth=ADMIN,
                    timeout=10,
                )
                response.raise_for_status()
            except httpx.HTTPError:
                continue
            # A queue electing a leader right now has no node yet.
            return Counter(
                str(q["node"])
                for q in response.json()
                if q.get("type") == "quorum" and q.get("node")
            )
        raise ClusterError("no node's management API answers")

    def busiest(self, counts: Counter[str] | None = None) -> Node:
        """The node leading the most quorum queues (the first on a tie)."""
        counts = self.leaders() if counts is None else counts
        return max(self.nodes, key=lambda node: (counts.get(node.name, 0), -node.index))

    # --- partitions ---------------------------------------------------------------------------

    def partition(self, node: Node) -> None:
        """Cut ``node`` off from the other nodes (its clients still reach it)."""
        rules = []
        for other in self.nodes:
            if other is node:
                continue
            rules += distribution_rules(node, other) + distribution_rules(other, node)
        self._add_rules(rules)

    def block_amqp(self, nodes: Iterable[Node]) -> None:
        """Cut the clients off from ``nodes`` (the nodes still see each other)."""
        rules = []
        for node in nodes:
            port = str(node.amqp_port)
            rules += [["-p", "tcp", "--dport", port], ["-p", "tcp", "--sport", port]]
        self._add_rules(rules)

    def heal(self, unhook: bool = False) -> None:
        """Remove every rule of ours (and, with ``unhook``, the chain itself)."""
        if shutil.which("iptables") is None:
            return
        iptables("-F", self.chain, check=False)
        if unhook:
            iptables("-D", "OUTPUT", "-j", self.chain, check=False)
            iptables("-X", self.chain, check=False)

    def _add_rules(self, rules: list[list[str]]) -> None:
        if iptables("-L", self.chain, "-n", check=False).returncode != 0:
            iptables("-N", self.chain)
        if iptables("-C", "OUTPUT", "-j", self.chain, check=False).returncode != 0:
            iptables("-I", "OUTPUT", "-j", self.chain)
        for rule in rules:
            iptables("-A", self.chain, *rule, "-j", "DROP")


def advanced_config(node: Node) -> str:
    """Erlang's own settings: the tick, and the source address of the node's connections
    (the rest of advanced.config is every node's: ``devtools.servers.rabbitmq``)."""
    address = node.address.replace(".", ",")
    kernel = f"{{net_ticktime, {NET_TICKTIME_SECONDS}}}, "
    kernel += f"{{inet_dist_connect_options, [{{ip, {{{address}}}}}]}}"
    return advanced_config_text(kernel)


def distribution_rules(source: Node, target: Node) -> list[list[str]]:
    """Drop the packets of ``source``'s distribution connections to ``target`` both ways."""
    port = str(target.dist_port)
    return [
        ["-s", source.address, "-p", "tcp", "--dport", port],
        ["-d", source.address, "-p", "tcp", "--sport", port],
    ]


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["iptables", "-w", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise ClusterError(f"iptables {' '.join(args)}: {done.stderr.strip()}")
    return done


def require_iptables() -> None:
    """Partitions need iptables and root: install Debian's package when it is missing."""
    if shutil.which("iptables") is not None:
        return
    if not is_root():
        raise ClusterError("iptables is missing and only root may install it (apt-get)")
    install_debian_packages(["iptables"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.cluster", description=__doc__)
    parser.add_argument(
        "action",
        choices=[
            "up",
            "down",
            "wipe",
            "status",
            "env",
            "kill",
            "start",
            "restart",
            "partition",
            "block-amqp",
            "heal",
        ],
    )
    parser.add_argument("nodes", nargs="?", default="", help="node number(s): 1, 2, 3 or 1,3")
    args = parser.parse_args(argv)
    cluster = Cluster()
    chosen = [cluster.node(int(n)) for n in args.nodes.split(",") if n]
    if args.action in ("kill", "start", "restart", "partition", "block-amqp") and not chosen:
        parser.error(f"{args.action} needs a node number")
    try:
        run_action(cluster, args.action, chosen)
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    return 0


def run_action(cluster: Cluster, action: str, chosen: list[Node]) -> None:
    if action == "up":
        cluster.up()
        print(format_env(cluster.environment()))
    elif action == "down":
        cluster.down()
    elif action == "wipe":
        cluster.wipe()
    elif action == "env":
        print(format_env(cluster.environment()))
    elif action == "status":
        for node in cluster.nodes:
            pid = cluster.pid(node)
            running = cluster.running_nodes(node) if pid else []
            print(f"{node.name}: {'pid ' + str(pid) if pid else 'stopped'}; sees {running}")
        with contextlib.suppress(ClusterError):
            print(f"quorum queue leaders: {dict(cluster.leaders())}")
    elif action == "heal":
        cluster.heal()
    else:
        for node in chosen:
            if action == "kill":
                cluster.kill(node)
            elif action == "start":
                cluster.start(node)
            elif action == "restart":
                cluster.restart(node)
            elif action == "partition":
                cluster.partition(node)
        if action == "block-amqp":
            cluster.block_amqp(chosen)


def format_env(env: dict[str, str]) -> str:
    return "\n".join(f"export {key}='{value}'" for key, value in env.items())


if __name__ == "__main__":
    raise SystemExit(main())

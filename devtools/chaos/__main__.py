"""``python -m devtools.chaos``: see ``devtools.chaos``. Exits 1 on any loss or duplicate."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Any

from devtools.chaos.cluster_faults import ClusterInfra
from devtools.chaos.run import ChaosConfig, run_sync, servers_from_environment
from devtools.cluster import Cluster
from devtools.run_system import ROOT
from shared.logs import configure_logging

SHORT, LONG = 2000, 20000
# The cluster run (--cluster): every cluster fault once (twice with --long) while it lasts.
CLUSTER_SHORT, CLUSTER_LONG = 1000, 10000


def parse(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(prog="python -m devtools.chaos", description=__doc__)
    parser.add_argument("--applications", type=int, help=f"default {SHORT} ({LONG} with --long)")
    parser.add_argument("--rate", type=float, default=10.0, help="submissions per second")
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--long", action="store_true", help="the long run: every fault 3 times")
    parser.add_argument("--failure-rate", type=float, default=0.05, help="per fault point")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument(
        "--no-server-faults", action="store_true", help="never restart RabbitMQ or Postgres"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on a three-node RabbitMQ cluster of its own (devtools.cluster): node kills,"
        " partitions and a rolling restart; reports/chaos-cluster.json",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    sizes = (CLUSTER_SHORT, CLUSTER_LONG) if args.cluster else (SHORT, LONG)
    applications = args.applications or (sizes[1] if args.long else sizes[0])
    extra: dict[str, Any] = {"report": args.report} if args.report else {}
    if args.cluster and not args.report:
        extra["report"] = ROOT / "reports" / "chaos-cluster.json"
    return ChaosConfig(
        seed=seed,
        applications=applications,
        rate=args.rate,
        rounds=(2 if args.cluster else 3) if args.long else 1,
        handler_failure_rate=args.failure_rate,
        provider_failure_rate=args.failure_rate,
        smtp_failure_rate=args.failure_rate,
        quiet_timeout=max(600.0, applications / 10),
        server_faults=not args.no_server_faults,
        cluster=args.cluster,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    configure_logging("chaos", "INFO")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if config.cluster:
        report = run_on_cluster(config, servers_from_environment().database_url)
    else:
        report = run_sync(config, servers_from_environment())
    return 0 if report["passed"] else 1


def run_on_cluster(config: ChaosConfig, database_url: str) -> dict[str, Any]:
    """On the local cluster: started for the run (and stopped after it) unless it runs."""
    cluster = Cluster()
    started = not all(cluster.pid(node) for node in cluster.nodes)
    print(f"chaos: {'starting' if started else 'using'} the cluster {cluster.nodes_setting}")
    cluster.up()
    try:
        return run_sync(config, ClusterInfra(cluster, database_url))
    finally:
        cluster.heal()
        if started:
            cluster.down()


if __name__ == "__main__":
    raise SystemExit(main())

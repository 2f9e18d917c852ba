"""``python -m devtools.chaos``: see ``devtools.chaos``. Exits 1 on any loss or duplicate."""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from devtools.chaos.run import ChaosConfig, run_sync, servers_from_environment
from shared.logs import configure_logging

SHORT, LONG = 2000, 20000


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
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    applications = args.applications or (LONG if args.long else SHORT)
    extra = {"report": args.report} if args.report else {}
    return ChaosConfig(
        seed=seed,
        applications=applications,
        rate=args.rate,
        rounds=3 if args.long else 1,
        handler_failure_rate=args.failure_rate,
        provider_failure_rate=args.failure_rate,
        smtp_failure_rate=args.failure_rate,
        quiet_timeout=max(600.0, applications / 10),
        server_faults=not args.no_server_faults,
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    configure_logging("chaos", "INFO")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = run_sync(config, servers_from_environment())
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The short chaos run, in CI: real load while every process is killed, RabbitMQ and Postgres
are restarted (when the servers are ours: local or docker mode) and poison is injected; then
nothing may be lost or done twice.

Sized for a 2-core runner (about 4 minutes, under 6): 600 applications at 4 per second, so
the load lasts 2.5 minutes and every fault lands while it goes on; the seed is
CHAOS_SEED when set, else a random one printed in the summary and written to the report.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from devtools.chaos.run import ChaosConfig, run_chaos
from devtools.run_system import ROOT
from tests.support.chaos import assert_exactly_once, chaos_seed
from tests.support.infra import Infra

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

APPLICATIONS = 600
RATE = 4.0


def reachable(url: str, default_port: int, timeout: float = 60) -> bool:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((parts.hostname, parts.port or default_port), 2).close()
            return True
        except OSError:
            time.sleep(1)
    return False


async def test_short_chaos_loses_nothing_and_does_nothing_twice(infra: Infra) -> None:
    # Given the whole system under steady load, with a seeded schedule of faults
    config = ChaosConfig(
        seed=chaos_seed(),
        applications=APPLICATIONS,
        rate=RATE,
        quiet_timeout=180,
        report=ROOT / "reports" / "chaos-ci.json",
    )
    # When everything is broken once and the system has gone quiet
    report = await run_chaos(config, infra)
    # Then every accepted application reached an outcome, exactly once everywhere
    assert_exactly_once(report, APPLICATIONS)
    # And the shared servers are up again for the other tests
    assert reachable(infra.rabbitmq_url, 5672) and reachable(infra.database_url, 5432)

"""The short cluster chaos run, in CI: steady load on the whole system connected to a
three-node cluster, while the node leading the most queues is killed, a node is partitioned
from the other two, the services are left with only a (paused) minority node, all three are
restarted in turn, and every service process is killed; then nothing may be lost or done
twice, and the API never answers anything but 202 or a 503 with Retry-After.

About 7 minutes on 2 cores: 1000 applications at 4 per second, so that the faults land
while the load goes on. The seed is CHAOS_SEED when set, else random (in the report).
"""

from __future__ import annotations

import pytest

from devtools.chaos.cluster_faults import CLUSTER_FAULTS, ClusterInfra
from devtools.chaos.run import ChaosConfig, run_chaos
from devtools.cluster import Cluster
from devtools.run_system import ROOT
from tests.support.chaos import assert_exactly_once, chaos_seed
from tests.support.infra import Infra

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.e2e,
    pytest.mark.timeout(900),
]

APPLICATIONS = 1000
RATE = 4.0


async def test_cluster_faults_lose_nothing_and_do_nothing_twice(
    infra: Infra, cluster: Cluster
) -> None:
    # Given the whole system on the cluster under steady load, with a seeded schedule
    config = ChaosConfig(
        seed=chaos_seed(),
        applications=APPLICATIONS,
        rate=RATE,
        quiet_timeout=240,
        cluster=True,
        report=ROOT / "reports" / "chaos-cluster-ci.json",
    )
    # When every cluster fault and every service kill has happened once
    report = await run_chaos(config, ClusterInfra(cluster, infra.database_url))
    # Then every accepted application reached an outcome, exactly once everywhere
    assert_exactly_once(report, APPLICATIONS)
    assert {fault["action"] for fault in report["cluster"]["faults"]} == set(CLUSTER_FAULTS)
    # And the submissions went on through every fault that came while they did (accepts never
    # wait for RabbitMQ; a node that had to be restarted can push the last fault past the load)
    stalls = [fault["accepts_stalled_seconds"] for fault in report["cluster"]["faults"]]
    assert any(stall is not None for stall in stalls)
    assert all(stall is None or stall < 20 for stall in stalls), report["cluster"]["faults"]

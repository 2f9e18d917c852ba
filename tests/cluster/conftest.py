"""A three-node RabbitMQ cluster of this machine's own (``devtools.cluster``), for the tests
that kill and cut off its nodes. Started when it is not running, and then stopped again at
the end (by pid); one already running (``python -m devtools.cluster up``) is used and left
running. Needs the rabbitmq-server package (``make infra`` installs it) and root (iptables,
installed from Debian when missing); skipped without them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devtools.cluster import Cluster, iptables, require_iptables
from devtools.servers.rabbitmq import installed


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if not installed():
        pytest.skip("no rabbitmq-server (Debian's package) to start a cluster with")
    if os.geteuid() != 0:
        pytest.skip("partitions need root (iptables rules on loopback)")
    require_iptables()  # Debian's package, installed when missing
    if iptables("-L", "OUTPUT", "-n", check=False).returncode != 0:
        pytest.skip("iptables does not work here (a container without NET_ADMIN?)")
    found = Cluster()
    started = not all(found.pid(node) for node in found.nodes)
    found.up()
    try:
        yield found
    finally:
        found.heal()
        if started:
            found.down()
        else:  # leave it as it was found: every node running
            for node in found.nodes:
                found.start(node)

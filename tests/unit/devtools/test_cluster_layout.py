"""The local cluster's layout and the rules that partition it (devtools.cluster), without
starting anything."""

from __future__ import annotations

from pathlib import Path

from devtools.cluster import CLUSTER_CONFIG, Cluster, advanced_config, distribution_rules


def cluster() -> Cluster:
    return Cluster(5681, Path("/tmp/cluster"))


def test_ports_stay_clear_of_the_single_node_and_of_each_other() -> None:
    nodes = cluster().nodes
    ports = [
        port
        for node in nodes
        for port in (node.amqp_port, node.management_port, node.prometheus_port, node.dist_port)
    ]
    assert len(set(ports)) == len(ports)
    assert not {5672, 15672, 15692, 25672} & set(ports)


def test_each_node_opens_its_distribution_connections_from_an_address_of_its_own() -> None:
    nodes = cluster().nodes
    assert len({node.address for node in nodes}) == len(nodes)
    assert "{ip, {127,0,0,12}}" in advanced_config(nodes[1])
    assert "pause_minority" in CLUSTER_CONFIG


def test_a_partition_drops_both_directions_between_two_nodes_only() -> None:
    one, two, _ = cluster().nodes
    assert distribution_rules(one, two) == [
        ["-s", "127.0.0.11", "-p", "tcp", "--dport", "25682"],
        ["-d", "127.0.0.11", "-p", "tcp", "--sport", "25682"],
    ]


def test_services_get_every_node() -> None:
    env = cluster().environment()
    assert env["RABBITMQ_NODES"] == "127.0.0.1:5681,127.0.0.1:5682,127.0.0.1:5683"
    assert env["RABBITMQ_URL"].endswith("@127.0.0.1:5681/")

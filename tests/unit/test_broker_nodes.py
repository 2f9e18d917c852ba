"""The node list of a RabbitMQ cluster (RABBITMQ_NODES) as URLs, and where each service starts."""

from __future__ import annotations

import pytest

from shared.broker.nodes import InvalidNodeList, node_urls, parse_nodes, spread
from shared.settings import CoreSettings

URL = "amqp://relay:s%40cret@rabbit:5672/admissions?heartbeat=10"


def test_each_node_gets_the_login_vhost_and_options_of_the_url() -> None:
    assert node_urls(URL, "n1:5681, n2:5682,n3") == [
        "amqp://relay:s%40cret@n1:5681/admissions?heartbeat=10",
        "amqp://relay:s%40cret@n2:5682/admissions?heartbeat=10",
        "amqp://relay:s%40cret@n3/admissions?heartbeat=10",
    ]


def test_without_a_node_list_the_url_is_the_only_node() -> None:
    assert node_urls(URL, "") == [URL]
    assert node_urls("amqp://localhost/", " , ") == ["amqp://localhost/"]


def test_ipv6_nodes_keep_their_brackets() -> None:
    assert parse_nodes("[::1]:5681") == [("[::1]", 5681)]


@pytest.mark.parametrize("bad", ["n1:port", "user@n1:5672", "n1:5672/vhost", "n1:99999"])
def test_a_bad_entry_is_named(bad: str) -> None:
    with pytest.raises(InvalidNodeList, match="RABBITMQ_NODES"):
        parse_nodes(f"ok:5672,{bad}")


def test_settings_refuse_a_bad_node_list_and_give_one_url_per_node() -> None:
    with pytest.raises(ValueError, match="n1:port"):
        CoreSettings(rabbitmq_nodes="n1:port")
    settings = CoreSettings(rabbitmq_url=URL, rabbitmq_nodes="n1:1,n2:2")  # type: ignore[arg-type]
    assert [u.split("@")[1].split("/")[0] for u in settings.broker_urls()] == ["n1:1", "n2:2"]


def test_services_spread_over_the_nodes_the_same_way_every_time() -> None:
    urls = ["a", "b", "c"]
    starts = {spread(urls, name)[0] for name in ("relay", "verifier", "payments", "mailer", "api")}
    assert len(starts) > 1
    assert spread(urls, "relay") == spread(urls, "relay")
    assert sorted(spread(urls, "relay")) == urls

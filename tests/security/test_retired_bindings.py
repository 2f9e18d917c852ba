"""Retired bindings under least privilege: the owner's login removes its queue's old binding,
any other login's start-up passes over it without failing."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from shared.broker.rabbitmq import RabbitBroker
from shared.system_topology import SYSTEM_TOPOLOGY
from tests.support.broker_logins import (  # noqa: F401 (the fixture)
    BrokerLogins,
    broker_logins,
    management,
)
from tests.support.infra import Infra


async def bindings_of(infra: Infra, vhost: str, queue: str) -> set[str]:
    base, auth = management(infra)
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        url = f"{base}/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}/bindings"
        response = await client.get(url)
        response.raise_for_status()
    events = SYSTEM_TOPOLOGY.exchanges.events
    return {b["routing_key"] for b in response.json() if b["source"] == events}


async def bind(infra: Infra, vhost: str, queue: str, routing_key: str) -> None:
    base, auth = management(infra)
    events = SYSTEM_TOPOLOGY.exchanges.events
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        url = f"{base}/api/bindings/{quote(vhost, safe='')}/e/{events}/q/{quote(queue, safe='')}"
        (await client.post(url, json={"routing_key": routing_key})).raise_for_status()


@pytest.mark.integration
async def test_only_the_owner_removes_its_queues_retired_binding(
    infra: Infra,
    broker_logins: BrokerLogins,  # noqa: F811 (the fixture imported above)
) -> None:
    # Given a broker that still holds a binding of the earlier version
    vhost = broker_logins.vhost
    await bind(infra, vhost, "api.projector", "email.sent")
    assert "email.sent" in await bindings_of(infra, vhost, "api.projector")
    # When a service that does not own the queue starts (its login may not unbind it)
    verifier = await RabbitBroker.connect(broker_logins.url("verifier"), connection_name="t")
    try:
        await verifier.declare(SYSTEM_TOPOLOGY)
    finally:
        await verifier.close()
    assert "email.sent" in await bindings_of(infra, vhost, "api.projector")
    # Then the owner's start-up removes it, and leaves the current bindings in place
    api = await RabbitBroker.connect(broker_logins.url("api"), connection_name="t")
    try:
        await api.declare(SYSTEM_TOPOLOGY)
    finally:
        await api.close()
    assert await bindings_of(infra, vhost, "api.projector") == set(
        SYSTEM_TOPOLOGY.queue("api.projector").bindings
    )

"""Bindings a version no longer declares are removed at start-up, on both brokers: declaring
only adds, so a broker that ran the earlier version would go on routing those events."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import Unroutable
from shared.topology import Topology
from tests.behaviour.conftest import Harness
from tests.behaviour.test_consumer import event_message


async def test_a_retired_binding_no_longer_routes_its_events(
    harness: Harness, namespace: str
) -> None:
    # Given a queue an earlier version bound to two event types
    old = harness.queue_spec(f"{namespace}.work")
    old = dataclasses.replace(old, bindings=(f"{namespace}.kept", f"{namespace}.dropped"))
    await harness.declare(old)
    await harness.send(f"{namespace}.dropped", event_message())

    # When this version declares it with one binding, the other one retired
    new = dataclasses.replace(old, bindings=(f"{namespace}.kept",))
    topology = Topology(
        harness.exchanges, (new,), retired_bindings=((new.name, f"{namespace}.dropped"),)
    )
    await harness.broker.declare(topology)
    await harness.broker.declare(topology)  # every start-up does it again: harmless

    # Then the retired event type reaches the queue no more; the kept one still does
    with pytest.raises(Unroutable):
        await harness.send(f"{namespace}.dropped", event_message())
    await harness.send(f"{namespace}.kept", event_message())

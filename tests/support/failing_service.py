"""A service whose start-up fails while its broker connection is reconnecting, run as every
service is run (``shared.lifecycle.run_service``), for tests/integration/test_service_exit.py.

It connects through a node list, prints ``connected``, and declares a topology again and
again, as a start-up goes through its steps. When the connection is lost, a step fails; it
lets the reconnection get under way (the next node holds the attempt), then fails for good,
as the mailer did when its node paused under a partition.

``python -m tests.support.failing_service <connection name> <node url> [<node url> ...]``
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial

from shared.broker.rabbitmq import RabbitBroker
from shared.lifecycle import run_service
from shared.topology import Exchanges, Topology

# Long enough for the reconnection to be in the middle of an attempt, shorter than the
# attempt's connect timeout (shared.broker.failover.CONNECT_TIMEOUT).
FAIL_AFTER_SECONDS = 1.0


async def start(name: str, urls: list[str], stop: asyncio.Event) -> None:
    broker = await RabbitBroker.connect(urls, connection_name=name)
    print("connected", flush=True)
    topology = Topology(Exchanges.namespaced(name), ())
    while not stop.is_set():
        try:
            await broker.declare(topology)
        except Exception as error:
            await asyncio.sleep(FAIL_AFTER_SECONDS)
            raise RuntimeError("start-up failed: the broker connection was lost") from error
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    run_service(partial(start, sys.argv[1], sys.argv[2:]))

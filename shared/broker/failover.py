"""A robust connection to a RabbitMQ cluster through a list of node URLs.

aio-pika's robust connection reconnects by itself and restores its channels, their QoS, the
queues and the consumers; but always to the same URL. Here each new attempt (after a failed
one, or after the connection was lost) goes to the next node of the list, so a client of a
node that was killed, paused on the minority side of a partition, or cut off from it, is
consuming on a surviving node a few seconds later. What it published without a confirm is
its own to publish again (the relay leaves such rows unpublished and retries them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection, UnderlayConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from shared.broker.nodes import spread

# CONNECTION_EXCEPTIONS: what a failed connection raises (for callers that catch it).
__all__ = ["CONNECTION_EXCEPTIONS", "NodeListConnection", "connect_to_nodes"]

# Seconds between two attempts (aio-pika's default is 5): the next node is tried soon.
RECONNECT_INTERVAL = 1.0
# A node cut off by a partition does not refuse, it stays silent: give up on it after this.
CONNECT_TIMEOUT = 5.0


class NodeListConnection(aio_pika.RobustConnection):
    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no node to connect to")
        self._nodes = [URL(url) for url in urls]
        self._current = 0
        super().__init__(self._nodes[0], **kwargs)
        self._attempted = False

    # aio-pika begins every connection attempt by dropping the old transport (and connects
    # to ``self.url``): the hook where an attempt after the first moves on to the next node.
    @property
    def transport(self) -> UnderlayConnection | None:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: UnderlayConnection | None) -> None:
        self.__dict__["_transport"] = value
        if value is None and getattr(self, "_attempted", False):
            self._current = (self._current + 1) % len(self._nodes)
            self.url = self._nodes[self._current]
        if value is None and hasattr(self, "_attempted"):
            self._attempted = True

    @property
    def node(self) -> str:
        """host:port of the node this connection is on (or trying)."""
        return f"{self.url.host}:{self.url.port}"


async def connect_to_nodes(
    urls: Sequence[str],
    *,
    connection_name: str,
    timeout: float = CONNECT_TIMEOUT,
    reconnect_interval: float = RECONNECT_INTERVAL,
) -> AbstractRobustConnection:
    """A robust connection to the first node that answers, starting at one picked by the
    connection's name (``nodes.spread``). Raises the last node's error when none does."""
    ordered = spread(urls, connection_name)
    error: BaseException | None = None
    for start in range(len(ordered)):
        connection = NodeListConnection(
            [*ordered[start:], *ordered[:start]],
            client_properties={"connection_name": connection_name},
            reconnect_interval=reconnect_interval,
        )
        try:
            await connection.connect(timeout=timeout)
            return connection
        except BaseException as failed:
            # Closed whatever stopped it, a caller's timeout (a cancel) included: a robust
            # connection not closed goes on connecting in the background, for ever.
            await connection.close()
            if not isinstance(failed, CONNECTION_EXCEPTIONS):
                raise
            error = failed
    assert error is not None
    raise error

"""The RabbitMQ management HTTP API, as far as the admin routes need it: queue statistics.

The broker's own numbers (ready, unacked, consumers, rates) are the source of truth for depths;
they are sampled by the broker every few seconds (``collect_statistics_interval``, 5 s by
default), so a count may lag a fresh change by that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

_COLUMNS = "name,messages_ready,messages_unacknowledged,consumers,message_stats"


class ManagementUnavailable(Exception):
    """The management API did not answer, or refused us."""


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    publish_rate: float = 0.0
    deliver_rate: float = 0.0

    @property
    def messages(self) -> int:
        return self.ready + self.unacked


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names: its path, percent-decoded; "/" when empty."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _rate(stats: Any, key: str) -> float:
    if not isinstance(stats, dict):
        return 0.0
    details = stats.get(key)
    if not isinstance(details, dict):
        return 0.0
    return float(details.get("rate") or 0.0)


def parse_queue(raw: dict[str, Any]) -> QueueStats:
    stats = raw.get("message_stats")
    return QueueStats(
        name=str(raw["name"]),
        ready=int(raw.get("messages_ready") or 0),
        unacked=int(raw.get("messages_unacknowledged") or 0),
        consumers=int(raw.get("consumers") or 0),
        publish_rate=_rate(stats, "publish_details"),
        deliver_rate=_rate(stats, "deliver_get_details"),
    )


class ManagementApi:
    """``base_url`` may list a cluster's nodes, comma-separated: a node that does not answer
    (killed, paused on the minority side of a partition) is passed over for the next; every
    node of a cluster serves the whole cluster's statistics."""

    def __init__(self, base_url: str, user: str, password: str, vhost: str) -> None:
        self.vhost = vhost
        self.base_urls = [url.strip().rstrip("/") for url in base_url.split(",") if url.strip()]
        # Creating the client opens nothing; connections are made on the first request.
        self._client = httpx.AsyncClient(auth=(user, password), timeout=5.0)

    async def queues(self) -> dict[str, QueueStats]:
        """Every queue of the vhost by name."""
        path = f"/api/queues/{quote(self.vhost, safe='')}"
        failure: Exception | None = None
        for base in self.base_urls:
            try:
                response = await self._client.get(base + path, params={"columns": _COLUMNS})
                response.raise_for_status()
                found = response.json()
            except httpx.TransportError as error:  # this node is out: the next
                failure = error
                continue
            except (httpx.HTTPError, ValueError) as error:
                raise ManagementUnavailable(f"RabbitMQ management API: {error}") from error
            return {queue.name: queue for queue in map(parse_queue, found)}
        raise ManagementUnavailable(f"RabbitMQ management API: no node answers: {failure}")

    async def close(self) -> None:
        await self._client.aclose()

"""The nodes of a RabbitMQ cluster as a client sees them: ``RABBITMQ_URL`` says how to log in
(user, password, virtual host, options) and ``RABBITMQ_NODES`` where (``host:port,...``).

Pure functions; ``shared.broker.failover`` connects through the list.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit


class InvalidNodeList(ValueError):
    pass


def parse_nodes(nodes: str) -> list[tuple[str, int | None]]:
    """``"host:port,host,[::1]:5672"`` as (host, port or None) pairs; empty means none."""
    parsed: list[tuple[str, int | None]] = []
    for item in (part.strip() for part in nodes.split(",")):
        if not item:
            continue
        try:
            parts = urlsplit(f"//{item}")
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise InvalidNodeList(
                f"RABBITMQ_NODES: {item!r} is not host[:port] ({error})"
            ) from None
        if not host or parts.path or parts.username is not None:
            raise InvalidNodeList(f"RABBITMQ_NODES: {item!r} is not host[:port]")
        parsed.append((f"[{host}]" if ":" in host else host, port))
    return parsed


def node_urls(url: str, nodes: str) -> list[str]:
    """``url`` once per node of ``nodes`` (its host and port replaced, the rest kept); just
    ``[url]`` without a node list."""
    parts = urlsplit(url)
    login = parts.netloc.rpartition("@")[0]
    urls = []
    for host, port in parse_nodes(nodes):
        netloc = f"{login}@{host}" if login else host
        if port is not None:
            netloc += f":{port}"
        urls.append(urlunsplit(parts._replace(netloc=netloc)))
    return urls or [url]


def spread(urls: Sequence[str], connection_name: str) -> list[str]:
    """The list turned to start at a node picked by the connection's name: the services
    spread over the nodes, the same way on every run."""
    start = zlib.crc32(connection_name.encode()) % len(urls)
    return [*urls[start:], *urls[:start]]

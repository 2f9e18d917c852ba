"""One RabbitMQ login per service on a development broker, as operators' definitions give them.

``make run``, the end-to-end tests, chaos runs and benchmarks start the services with the
broker's administrator URL in ``RABBITMQ_URL`` (``guest`` on a local broker). Before the
services start, ``provision`` loads the definitions document (``deploy.definitions``) into the
run's virtual host through the management HTTP API: its exchanges, queues, bindings and
policies, each service's user with its permissions and topic permissions. Then
``service_url`` gives each process the URL of its own login, so a local run is refused by the
broker exactly where production would be.

Users are global on a broker and hold permissions per virtual host, so runs in different
virtual hosts share the users of the same name and each grants them its own vhost only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from deploy.definitions.document import export_definitions
from deploy.definitions.users import OPERATOR, OPS, dev_password, dev_users
from shared.manifest import process_logins
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import Topology


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# The parts of a definitions document that live in one virtual host (POST /api/definitions/<vhost>).
_VHOST_PARTS = ("exchanges", "queues", "bindings", "policies")


@dataclass(frozen=True)
class Management:
    url: str  # http://host:15672
    user: str
    password: str

    def api(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/api/{path}"


def service_url(admin_url: str, user: str, password: str | None = None) -> str:
    """``admin_url`` with the login of ``user`` (its development password by default)."""
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password or dev_password(user), safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def provision(
    management: Management,
    vhost: str,
    admin_user: str,
    *,
    topology: Topology = SYSTEM_TOPOLOGY,
    user_names: Mapping[str, str] | None = None,
) -> None:
    """Load the topology and the services' logins into ``vhost`` (created if missing).

    ``user_names`` renames the document's users (tests use throw-away names); the operator
    administrator is left out (the broker's own administrator, ``admin_user``, stays the
    operator of a development broker). An exchange of the document that exists with another
    type (from before the retry and dead-letter exchanges became topic exchanges) is
    replaced: its bindings come back with the document.
    """
    document = export_definitions(topology, dev_users(), vhost=vhost)
    every = {user["name"]: user["name"] for user in document["users"]}
    names = dict(every if user_names is None else user_names)
    names.pop(OPERATOR, None)
    encoded = quote(vhost, safe="")
    auth = (management.user, management.password)
    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
        await _ok(client.put(management.api(f"vhosts/{encoded}")))
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        await _ok(
            client.put(
                management.api(f"permissions/{encoded}/{quote(admin_user, safe='')}"),
                json=everything,
            )
        )
        await _replace_retyped_exchanges(client, management, encoded, document["exchanges"])
        scoped = {part: document[part] for part in _VHOST_PARTS}
        await _ok(client.post(management.api(f"definitions/{encoded}"), json=scoped))
        for entry in document["users"]:
            if entry["name"] not in names:
                continue
            body = {k: entry[k] for k in ("password_hash", "hashing_algorithm")}
            body["tags"] = ",".join(entry["tags"])
            user = quote(names[entry["name"]], safe="")
            await _ok(client.put(management.api(f"users/{user}"), json=body))
        for entry in document["permissions"]:
            if entry["user"] in names:
                user = quote(names[entry["user"]], safe="")
                granted = {k: entry[k] for k in ("configure", "write", "read")}
                await _ok(client.put(management.api(f"permissions/{encoded}/{user}"), json=granted))
        for entry in document["topic_permissions"]:
            if entry["user"] in names:
                user = quote(names[entry["user"]], safe="")
                granted = {k: entry[k] for k in ("exchange", "write", "read")}
                await _ok(
                    client.put(management.api(f"topic-permissions/{encoded}/{user}"), json=granted)
                )


def process_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The settings that make process ``name`` log in as its own service; the api reads queue
    statistics with its own login too (it has the ``management`` tag), and handles dead
    letters and control commands as ``ops``, as in compose."""
    login = process_logins().get(name)  # its service's: the projector's is the api's
    if login is None:
        return {}
    own = {"RABBITMQ_URL": service_url(env["RABBITMQ_URL"], login)}
    if login == "api":
        own["RABBITMQ_MANAGEMENT_USER"] = login
        own["RABBITMQ_MANAGEMENT_PASSWORD"] = dev_password(login)
        own["OPS_RABBITMQ_URL"] = service_url(env["RABBITMQ_URL"], OPS)
    return own


async def provision_from_environment(env: Mapping[str, str]) -> None:
    """``provision`` the virtual host of ``RABBITMQ_URL`` (the administrator's login) through
    ``RABBITMQ_MANAGEMENT_URL`` and its credentials, as ``make run`` and ``scripts/infra.sh``
    record them in ``.run/infra.env``."""
    admin_url = env["RABBITMQ_URL"]
    parts = urlsplit(admin_url)
    management = Management(
        env.get("RABBITMQ_MANAGEMENT_URL") or f"http://{parts.hostname or '127.0.0.1'}:15672/",
        env.get("RABBITMQ_MANAGEMENT_USER") or parts.username or "guest",
        env.get("RABBITMQ_MANAGEMENT_PASSWORD") or parts.password or "guest",
    )
    await provision(management, vhost_of(admin_url), parts.username or "guest")


async def delete_users(management: Management, names: list[str]) -> None:
    async with httpx.AsyncClient(auth=(management.user, management.password), timeout=30) as c:
        for name in names:
            await c.delete(management.api(f"users/{quote(name, safe='')}"))


async def _replace_retyped_exchanges(
    client: httpx.AsyncClient,
    management: Management,
    encoded_vhost: str,
    exchanges: list[dict[str, Any]],
) -> None:
    for exchange in exchanges:
        url = management.api(f"exchanges/{encoded_vhost}/{quote(exchange['name'], safe='')}")
        found = await client.get(url)
        if found.status_code == 200 and found.json().get("type") != exchange["type"]:
            await _ok(client.delete(url))


async def _ok(request: Any) -> httpx.Response:
    response: httpx.Response = await request
    if response.status_code >= 400:
        raise RuntimeError(
            f"RabbitMQ management {response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response

"""The RabbitMQ definitions document operators load, exported from the topology.

``python -m shared.definitions > deploy/rabbitmq/definitions.json`` writes the vhost, its
exchanges, queues (with their exact arguments) and bindings, a policy spreading quorum queue
leaders over the cluster's nodes, and one user per service with least-privilege permissions,
plus an ``operator`` administrator for the management UI and ``ops``, the admin API's login
for dead letters and control commands.
Queues come from ``shared.topology.declarations()``, never from a list kept here, so the file
and the code cannot drift apart (a unit test compares the committed file with a fresh export).

Permissions follow what each service's code really does on the broker:
- configure: declare (and so delete) only its own queues, their retry tiers and dead-letter
  queue, and its per-instance control queues ``control.<service>.<uuid>``;
- write: publish only to the exchanges it must (every consumer: ``admissions.retry`` and
  ``admissions.dead``; the relay: ``admissions.events``), and bind its own queues (a binding
  needs *write* on the queue);
- read: consume its own work and control queues, and bind them to the exchanges they are fed
  from (a binding needs *read* on the exchange). Declaring a queue that dead-letters also needs
  *read* on that queue, so retry tiers are readable by their owner.
The api has the ``management`` tag to read queue statistics of its vhost from the management
HTTP API, and reads no dead-letter queue: RabbitMQ's *read* permission, which reading a DLQ
needs, also allows ``queue.purge``, and the api's login serves the internet-facing replicas.
Dead letters and control commands are the ``ops`` login's (``OPS_RABBITMQ_URL`` of the admin
API, ``ops_permissions``): read every DLQ, publish replays into work queues and control
commands, configure nothing, read no work queue.

Topic permissions narrow *write* further, by routing key, on the exchanges that carry messages
into queues (all topic exchanges for that reason, see ``shared.topology``):
- ``admissions.retry``: a consumer routes only to its own retry tiers, so it cannot put a
  message into another service's work queue (the tiers lead back to their own queue only); the
  ``ops`` login to every work queue (dead-letter replay) and nowhere else;
- ``admissions.dead``: a consumer dead-letters only into its own dead-letter queues;
- ``admissions.events``: the relay publishes only the event types of the catalog.
What the broker cannot tell apart (the relay publishing any service's type, the api's replay)
is covered by signatures: consumers accept an event only when signed by the service that owns
its type (``shared.events.signing``).

Development passwords are ``<user>-dev-password``, hashed with a salt derived from the user
name so that the committed file is stable; ``--passwords-from-env`` takes each password from
``<USER>_RABBITMQ_PASSWORD`` and salts it at random, for real deployments.

Services still declare the whole topology at start-up; with these logins the broker adapter
declares what it may and only checks that the rest exists (``RabbitBroker.declare``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared import manifest
from shared.control import control_queue_prefix
from shared.events.catalog import CATALOG
from shared.manifest import ServiceSpec
from shared.settings import (
    KNOWN_DEVELOPMENT_VALUES,
    MIN_SECRET_CHARS,
    is_development_value,
)
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import (
    BindingDeclaration,
    ExchangeDeclaration,
    QueueDeclaration,
    Topology,
    dead_letter_queue_name,
    declarations,
    retry_queue_name,
)

VHOST = "admissions"
OPERATOR = "operator"
# The admin API's operations login: dead letters (read, replay, and so purge) and control
# commands, apart from the api's own login (see the module docstring).
OPS = "ops"
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
NOTHING = "^$"  # matches only the empty name; "" is checked as amq.default, so: no access

# How long a dead letter waits for an operator (list, replay) before the broker drops it: the
# DLQs' retention, shown as the policy ``dead-letter-queues-max-age`` in the management UI.
DEAD_LETTER_MAX_AGE = timedelta(days=14)


@dataclass(frozen=True)
class BrokerUser:
    name: str
    password: str
    tags: tuple[str, ...] = ()

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.tags


@dataclass(frozen=True)
class Permission:
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class TopicPermission:
    """Routing keys a user may publish with (``write``) and bind with (``read``) on one topic
    exchange. Queue-level *read* already limits what a user may bind, so ``read`` is open."""

    exchange: str
    write: str
    read: str = ".*"


def dev_password(user: str) -> str:
    return f"{user}-dev-password"


def dev_users(services: Sequence[ServiceSpec] | None = None) -> tuple[BrokerUser, ...]:
    """One user per service of the manifest (with its tags), the admin API's ``ops`` and the
    operator, with their development passwords."""
    specs = manifest.SERVICES if services is None else services
    users = [BrokerUser(s.name, dev_password(s.name), s.broker_tags) for s in specs]
    users.append(BrokerUser(OPS, dev_password(OPS)))
    users.append(BrokerUser(OPERATOR, dev_password(OPERATOR), ("administrator",)))
    return tuple(users)


# --- passwords -------------------------------------------------------------------------------


def stable_salt(user: str) -> bytes:
    """4 bytes derived from the user name: the same file on every export."""
    return hashlib.sha256(f"admissions-definitions:{user}".encode()).digest()[:4]


def hash_password(password: str, salt: bytes) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    if len(salt) != 4:
        raise ValueError("RabbitMQ password salts are 4 bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def password_matches(password_hash: str, password: str) -> bool:
    raw = base64.b64decode(password_hash)
    return hash_password(password, raw[:4]) == password_hash


# --- permissions -----------------------------------------------------------------------------


def control_queue_pattern(service: str) -> str:
    """Regex of ``control.<service>.<instance>``, the per-process control queues."""
    return re.escape(control_queue_prefix(service)) + "[^.]+"


def _any_of(exact_names: Iterable[str], patterns: Iterable[str] = ()) -> str:
    alternatives = [re.escape(name) for name in sorted(set(exact_names))]
    alternatives += sorted(set(patterns))
    if not alternatives:
        return NOTHING
    return "^(?:" + "|".join(alternatives) + ")$"


def extra_published_exchanges(service: str) -> tuple[str, ...]:
    """The exchanges (field names of ``Exchanges``) a service publishes to besides the retry
    and dead-letter exchanges every consumer uses: ``publishes_to`` in the manifest."""
    return next((spec.publishes_to for spec in manifest.SERVICES if spec.name == service), ())


def service_permissions(topology: Topology, service: str) -> Permission:
    """Least privilege for one service's broker login (see the module docstring)."""
    ex = topology.exchanges
    own = [spec for spec in topology.queues if spec.service == service]
    work = [spec.name for spec in own]
    tiers = [retry_queue_name(spec.name, delay) for spec in own for delay in spec.retry_tiers]
    dead = [dead_letter_queue_name(spec.name) for spec in own]
    control = [control_queue_pattern(service)] if own else []

    published = [ex.retry, ex.dead] if own else []
    published += [getattr(ex, field) for field in extra_published_exchanges(service)]
    bound_from = [ex.events, ex.retry, ex.dead, ex.control] if own else []

    return Permission(
        configure=_any_of([*work, *tiers, *dead], control),
        write=_any_of([*work, *tiers, *dead, *published], control),
        read=_any_of([*work, *tiers, *bound_from], control),
    )


def ops_permissions(topology: Topology) -> Permission:
    """The admin API's operations login: read (list, replay, and so purge) every dead-letter
    queue, publish replays to the retry exchange and commands to the control exchange;
    declare nothing, read no work queue."""
    ex = topology.exchanges
    return Permission(
        configure=NOTHING,
        write=_any_of([ex.retry, ex.control]),
        read=_any_of(dead_letter_queue_name(spec.name) for spec in topology.queues),
    )


def service_topic_permissions(topology: Topology, service: str) -> tuple[TopicPermission, ...]:
    """The routing keys a service may publish with (see the module docstring)."""
    ex = topology.exchanges
    if service == OPS:  # dead-letter replay: into a work queue, nowhere else
        return (TopicPermission(ex.retry, _any_of(spec.name for spec in topology.queues)),)
    own = [spec for spec in topology.queues if spec.service == service]
    granted: list[TopicPermission] = []
    if own:
        tiers = [retry_queue_name(spec.name, delay) for spec in own for delay in spec.retry_tiers]
        granted.append(TopicPermission(ex.retry, _any_of(tiers)))
        granted.append(TopicPermission(ex.dead, _any_of(spec.name for spec in own)))
    if "events" in extra_published_exchanges(service):
        granted.append(TopicPermission(ex.events, _any_of(CATALOG)))
    return tuple(granted)


def permissions_for(topology: Topology, user: BrokerUser) -> Permission:
    if user.is_administrator:
        return Permission(configure=".*", write=".*", read=".*")
    if user.name == OPS:
        return ops_permissions(topology)
    return service_permissions(topology, user.name)


# --- the document ----------------------------------------------------------------------------


def export_definitions(
    topology: Topology,
    users: Sequence[BrokerUser],
    *,
    vhost: str = VHOST,
    salt: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """A definitions document (``rabbitmqctl import_definitions`` / ``load_definitions``).

    ``salt`` maps user names to their password salts; by default each is derived from the name.
    Lists are sorted, so the document only changes when the topology or the users do.
    """
    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for item in declarations(topology):
        if isinstance(item, ExchangeDeclaration):
            exchanges.append(
                {
                    "name": item.name,
                    "vhost": vhost,
                    "type": item.kind,
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
            )
        elif isinstance(item, QueueDeclaration):
            queues.append(
                {
                    "name": item.name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": dict(item.arguments),
                }
            )
        elif isinstance(item, BindingDeclaration):
            bindings.append(
                {
                    "source": item.exchange,
                    "vhost": vhost,
                    "destination": item.queue,
                    "destination_type": "queue",
                    "routing_key": item.routing_key,
                    "arguments": {},
                }
            )

    salts = salt or {}
    user_entries = [
        {
            "name": user.name,
            "password_hash": hash_password(
                user.password, salts.get(user.name) or stable_salt(user.name)
            ),
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": list(user.tags),
            "limits": {},
        }
        for user in users
    ]
    topic_permissions = [
        {
            "user": user.name,
            "vhost": vhost,
            "exchange": granted.exchange,
            "write": granted.write,
            "read": granted.read,
        }
        for user in users
        if not user.is_administrator
        for granted in service_topic_permissions(topology, user.name)
    ]
    permissions = []
    for user in users:
        granted = permissions_for(topology, user)
        permissions.append(
            {
                "user": user.name,
                "vhost": vhost,
                "configure": granted.configure,
                "write": granted.write,
                "read": granted.read,
            }
        )

    return {
        "vhosts": [
            {
                "name": vhost,
                "metadata": {
                    "description": "University admissions: events, work queues, retries, DLQs",
                    "tags": [],
                    "default_queue_type": "quorum",
                },
            }
        ],
        "users": sorted(user_entries, key=lambda entry: entry["name"]),
        "permissions": sorted(permissions, key=lambda entry: entry["user"]),
        "topic_permissions": sorted(
            topic_permissions, key=lambda entry: (entry["user"], entry["exchange"])
        ),
        "parameters": [],
        "global_parameters": [],
        "policies": policies(topology, vhost),
        "exchanges": sorted(exchanges, key=lambda entry: entry["name"]),
        "queues": sorted(queues, key=lambda entry: entry["name"]),
        "bindings": sorted(
            bindings, key=lambda b: (b["source"], b["destination"], b["routing_key"])
        ),
    }


def policies(topology: Topology, vhost: str) -> list[dict[str, Any]]:
    """Quorum queue leaders spread over the cluster's nodes instead of piling up on the node
    that happened to import the definitions (all of them, at boot); each work queue
    bounded (``QueueSpec.max_length``); each dead-letter queue's messages dropped after
    ``DEAD_LETTER_MAX_AGE``. A queue takes one policy, the highest priority's, so the others
    repeat the leader locator."""
    balanced = {"queue-leader-locator": "balanced"}
    found = [
        {
            "name": "queue-leaders-balanced",
            "vhost": vhost,
            "pattern": ".*",
            "apply-to": "queues",
            "priority": 0,
            "definition": balanced,
        }
    ]
    by_length: dict[int, list[str]] = {}
    for spec in topology.queues:
        by_length.setdefault(spec.max_length, []).append(spec.name)
    for length, names in sorted(by_length.items()):
        found.append(
            {
                "name": f"work-queues-max-length-{length}",
                "vhost": vhost,
                "pattern": _any_of(names),
                "apply-to": "queues",
                "priority": 1,
                "definition": {**balanced, "max-length": length, "overflow": "reject-publish"},
            }
        )
    found.append(
        {
            "name": "dead-letter-queues-max-age",
            "vhost": vhost,
            "pattern": _any_of(dead_letter_queue_name(spec.name) for spec in topology.queues),
            "apply-to": "queues",
            "priority": 1,
            "definition": {
                **balanced,
                "message-ttl": int(DEAD_LETTER_MAX_AGE.total_seconds() * 1000),
            },
        }
    )
    return found


def render(document: Mapping[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def users_from_env(environ: Mapping[str, str], names: Iterable[str]) -> tuple[BrokerUser, ...]:
    """Each user's password from ``<USER>_RABBITMQ_PASSWORD`` (all required, and none a
    development password or shorter than ``MIN_SECRET_CHARS``: this is the production
    export, and the operator it makes is an administrator)."""
    missing = [n for n in names if not environ.get(f"{n.upper()}_RABBITMQ_PASSWORD")]
    if missing:
        variables = ", ".join(f"{n.upper()}_RABBITMQ_PASSWORD" for n in missing)
        raise SystemExit(f"--passwords-from-env: set {variables}")
    weak = [
        f"{n.upper()}_RABBITMQ_PASSWORD"
        for n in names
        if len(environ[f"{n.upper()}_RABBITMQ_PASSWORD"]) < MIN_SECRET_CHARS
        or is_development_value(environ[f"{n.upper()}_RABBITMQ_PASSWORD"])
    ]
    if weak:
        raise SystemExit(
            f"--passwords-from-env: {', '.join(weak)}: a development password or shorter "
            f"than {MIN_SECRET_CHARS} characters"
        )
    return tuple(
        BrokerUser(user.name, environ[f"{user.name.upper()}_RABBITMQ_PASSWORD"], user.tags)
        for user in dev_users()
        if user.name in set(names)
    )


def development_logins(document: Mapping[str, Any]) -> list[str]:
    """The users of a definitions document a development login opens: ``guest``, or a password
    hash matching a known development value (any user's, not only its own)."""
    names = [str(user.get("name", "")) for user in document.get("users", [])]
    candidates = {*KNOWN_DEVELOPMENT_VALUES, *(dev_password(name) for name in names), *names}
    found = []
    for user in document.get("users", []):
        name = str(user.get("name", ""))
        password_hash = str(user.get("password_hash", ""))
        if name == "guest" or any(password_matches(password_hash, p) for p in candidates):
            found.append(name)
    return found


def check(paths: Sequence[str]) -> None:
    """Exit naming every user of these definitions files that a development login opens."""
    weak = [
        f"{path}: {name}"
        for path in paths
        for name in development_logins(json.loads(Path(path).read_text()))
    ]
    if weak:
        raise SystemExit(
            "development logins in the broker's definitions (generate them with "
            f"--passwords-from-env): {', '.join(weak)}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shared.definitions",
        description="Print the RabbitMQ definitions document of the system topology.",
    )
    parser.add_argument("--vhost", default=VHOST)
    parser.add_argument(
        "--passwords-from-env",
        action="store_true",
        help="real passwords from <USER>_RABBITMQ_PASSWORD, with random salts",
    )
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        help="exit non-zero when a user of these definitions has a development login",
    )
    args = parser.parse_args(argv)
    if args.check:
        check(args.check)
        return
    users = dev_users()
    salt: dict[str, bytes] | None = None
    if args.passwords_from_env:
        users = users_from_env(os.environ, [user.name for user in users])
        salt = {user.name: secrets.token_bytes(4) for user in users}
    document = export_definitions(SYSTEM_TOPOLOGY, users, vhost=args.vhost, salt=salt)
    sys.stdout.write(render(document))


if __name__ == "__main__":
    main()

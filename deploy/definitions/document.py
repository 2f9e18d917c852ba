"""The definitions document (``rabbitmqctl import_definitions`` / ``load_definitions``): the
vhost, its exchanges, queues and bindings from ``shared.topology.declarations()``, the
policies operators see, and the logins with what each is granted."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from deploy.definitions.passwords import HASHING_ALGORITHM, hash_password, stable_salt
from deploy.definitions.permissions import any_of, grant_for
from deploy.definitions.users import BrokerUser
from shared.topology import (
    BindingDeclaration,
    ExchangeDeclaration,
    QueueDeclaration,
    Topology,
    dead_letter_queue_name,
    declarations,
)

VHOST = "admissions"

# How long a dead letter waits for an operator (list, replay) before the broker drops it: the
# DLQs' retention, shown as the policy ``dead-letter-queues-max-age`` in the management UI.
DEAD_LETTER_MAX_AGE = timedelta(days=14)


def export_definitions(
    topology: Topology,
    users: Sequence[BrokerUser],
    *,
    vhost: str = VHOST,
    salt: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """The whole document. ``salt`` maps user names to their password salts; by default each
    is derived from the name. Lists are sorted, so the document only changes when the
    topology or the users do."""
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
    grants = {user.name: grant_for(topology, user) for user in users}
    permissions = [
        {
            "user": name,
            "vhost": vhost,
            "configure": grant.permission.configure,
            "write": grant.permission.write,
            "read": grant.permission.read,
        }
        for name, grant in grants.items()
    ]
    topic_permissions = [
        {
            "user": name,
            "vhost": vhost,
            "exchange": topic.exchange,
            "write": topic.write,
            "read": topic.read,
        }
        for name, grant in grants.items()
        for topic in grant.topics
    ]

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
                "pattern": any_of(names),
                "apply-to": "queues",
                "priority": 1,
                "definition": {**balanced, "max-length": length, "overflow": "reject-publish"},
            }
        )
    found.append(
        {
            "name": "dead-letter-queues-max-age",
            "vhost": vhost,
            "pattern": any_of(dead_letter_queue_name(spec.name) for spec in topology.queues),
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

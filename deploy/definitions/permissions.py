"""What each broker login may do, following what its code really does on the broker.

A service's login (its queues from the topology, its ``publishes_to`` from the manifest):
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
API): read every DLQ, publish replays into work queues and control commands, configure
nothing, read no work queue.

Topic permissions narrow *write* further, by routing key, on the exchanges that carry messages
into queues (all topic exchanges for that reason, see ``shared.topology``):
- ``admissions.retry``: a consumer routes only to its own retry tiers, so it cannot put a
  message into another service's work queue (the tiers lead back to their own queue only); the
  ``ops`` login to every work queue (dead-letter replay) and nowhere else;
- ``admissions.dead``: a consumer dead-letters only into its own dead-letter queues;
- ``admissions.events``: a service that publishes there (the relay) only the event types of
  the catalog.
What the broker cannot tell apart (the relay publishing any service's type, the ops login's
replay) is covered by signatures: consumers accept an event only when signed by the service
that owns its type (``shared.events.signing``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from deploy.definitions.users import OPS, BrokerUser
from shared.control import control_queue_prefix
from shared.events.catalog import CATALOG
from shared.manifest import ServiceSpec
from shared.topology import Topology, dead_letter_queue_name, retry_queue_name

NOTHING = "^$"  # matches only the empty name; "" is checked as amq.default, so: no access


@dataclass(frozen=True)
class Permission:
    configure: str
    write: str
    read: str


EVERYTHING = Permission(configure=".*", write=".*", read=".*")


@dataclass(frozen=True)
class TopicPermission:
    """Routing keys a user may publish with (``write``) and bind with (``read``) on one topic
    exchange. Queue-level *read* already limits what a user may bind, so ``read`` is open."""

    exchange: str
    write: str
    read: str = ".*"


def any_of(exact_names: Iterable[str], patterns: Iterable[str] = ()) -> str:
    """A regex matching exactly these names or patterns (RabbitMQ matches anywhere in a name,
    so it anchors itself); ``NOTHING`` for none."""
    alternatives = [re.escape(name) for name in sorted(set(exact_names))]
    alternatives += sorted(set(patterns))
    if not alternatives:
        return NOTHING
    return "^(?:" + "|".join(alternatives) + ")$"


def control_queue_pattern(service: str) -> str:
    """Regex of ``control.<service>.<instance>``, the per-process control queues."""
    return re.escape(control_queue_prefix(service)) + "[^.]+"


def service_permissions(topology: Topology, service: ServiceSpec) -> Permission:
    """Least privilege for one service's login (see the module docstring)."""
    ex = topology.exchanges
    own = [spec for spec in topology.queues if spec.service == service.name]
    work = [spec.name for spec in own]
    tiers = [retry_queue_name(spec.name, delay) for spec in own for delay in spec.retry_tiers]
    dead = [dead_letter_queue_name(spec.name) for spec in own]
    control = [control_queue_pattern(service.name)] if own else []

    published = [ex.retry, ex.dead] if own else []
    published += [getattr(ex, field) for field in service.publishes_to]
    bound_from = [ex.events, ex.retry, ex.dead, ex.control] if own else []

    return Permission(
        configure=any_of([*work, *tiers, *dead], control),
        write=any_of([*work, *tiers, *dead, *published], control),
        read=any_of([*work, *tiers, *bound_from], control),
    )


def ops_permissions(topology: Topology) -> Permission:
    """The admin API's operations login: read (list, replay, and so purge) every dead-letter
    queue, publish replays to the retry exchange and commands to the control exchange;
    declare nothing, read no work queue."""
    ex = topology.exchanges
    return Permission(
        configure=NOTHING,
        write=any_of([ex.retry, ex.control]),
        read=any_of(dead_letter_queue_name(spec.name) for spec in topology.queues),
    )


def service_topic_permissions(
    topology: Topology, service: ServiceSpec
) -> tuple[TopicPermission, ...]:
    """The routing keys a service may publish with (see the module docstring)."""
    ex = topology.exchanges
    own = [spec for spec in topology.queues if spec.service == service.name]
    granted: list[TopicPermission] = []
    if own:
        tiers = [retry_queue_name(spec.name, delay) for spec in own for delay in spec.retry_tiers]
        granted.append(TopicPermission(ex.retry, any_of(tiers)))
        granted.append(TopicPermission(ex.dead, any_of(spec.name for spec in own)))
    if "events" in service.publishes_to:
        granted.append(TopicPermission(ex.events, any_of(CATALOG)))
    return tuple(granted)


def ops_topic_permissions(topology: Topology) -> tuple[TopicPermission, ...]:
    """Dead-letter replay: into a work queue, nowhere else."""
    return (TopicPermission(topology.exchanges.retry, any_of(s.name for s in topology.queues)),)


@dataclass(frozen=True)
class Grant:
    """Everything one login is granted in the vhost."""

    permission: Permission
    topics: tuple[TopicPermission, ...] = ()


def grant_for(topology: Topology, user: BrokerUser) -> Grant:
    if user.is_administrator:
        # No topic permissions: it publishes with any routing key.
        return Grant(EVERYTHING)
    if user.service is not None:
        return Grant(
            service_permissions(topology, user.service),
            service_topic_permissions(topology, user.service),
        )
    if user.name == OPS:
        return Grant(ops_permissions(topology), ops_topic_permissions(topology))
    raise ValueError(f"{user.name!r} is neither a service, {OPS!r} nor an administrator")

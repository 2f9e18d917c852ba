"""The AsyncAPI 3.0 document of every event: what travels on the broker, who sends it and who
receives it, derived from the descriptions the runtime itself runs on.

- messages: one per type of the event catalog; its payload is the envelope with that type's
  payload schema, both from the pydantic models (``components.schemas``), and its headers are
  the ones the relay and the consumers read (schema version, signature, attempt);
- channels: one per event type (the routing key on the events exchange, where its owner
  publishes it) and one per work queue (where a service consumes it), with their AMQP
  bindings and, in words, each queue's retries and dead-letter queue;
- operations: per service of the manifest, a ``send`` for each type it owns (``published_by``)
  and a ``receive`` for each of its queues (``shared.system_topology``), tagged with its name.

The API serves it at ``/asyncapi.json``; ``python -m deploy.asyncapi`` writes the committed copy
(``deploy/asyncapi.json``), which a unit test keeps equal to a fresh export and valid against the
AsyncAPI 3.0.0 JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import manifest
from shared.consumer.policy import ATTEMPT, FIRST_SEEN, LAST_ERROR
from shared.events.catalog import CATALOG, EventPayload
from shared.events.envelope import CONTENT_TYPE, Envelope
from shared.events.signing import SIGNATURE_HEADER, SIGNED_BY_HEADER
from shared.manifest import ServiceSpec
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import (
    QueueSpec,
    Topology,
    dead_letter_queue_name,
    format_delay,
    retry_queue_name,
)

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SCHEMAS = "#/components/schemas/"

Document = dict[str, Any]


def asyncapi_document(
    services: Sequence[ServiceSpec] | None = None,
    topology: Topology = SYSTEM_TOPOLOGY,
    catalog: Mapping[str, type[EventPayload]] = CATALOG,
) -> Document:
    """The whole document (plain JSON data). ``services`` default to the manifest's, read
    when called."""
    specs = manifest.SERVICES if services is None else services
    event_channels = {t: event_channel(t, model, topology) for t, model in catalog.items()}
    queue_channels = {q.name: queue_channel(q, topology) for q in topology.queues}
    shared_names = set(event_channels) & set(queue_channels)
    if shared_names:
        raise ValueError(f"a queue and an event type share a channel id: {sorted(shared_names)}")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Admissions events",
            "version": "1.0.0",
            "description": DESCRIPTION.format(events=topology.exchanges.events),
            "tags": [service_tag(spec) for spec in specs],
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": {**event_channels, **queue_channels},
        "operations": {
            name: operation
            for spec in specs
            for name, operation in service_operations(spec, topology, catalog).items()
        },
        "components": {
            "messages": {t: message(t, model) for t, model in catalog.items()},
            "schemas": payload_schemas(catalog.values()),
        },
    }


DESCRIPTION = """\
Every event of the admissions system. A service writes an event to its own outbox in the \
transaction that decided it; the relay publishes it, signed with that service's key, to the \
topic exchange `{events}` with the event type as routing key. Each consumer reads its own \
work queues, bound to the types it handles; a failure is retried through the queue's retry \
tiers and, when the attempts run out or the error is permanent, dead-lettered to its `.dlq`. \
The body is the JSON envelope (message id, type, version, times, correlation) around the \
type's payload."""


# --- channels ---------------------------------------------------------------------------------


def event_channel(event_type: str, model: type[EventPayload], topology: Topology) -> Document:
    consumers = [q for q in topology.queues if event_type in q.bindings]
    received = ", ".join(f"`{q.name}` ({q.service})" for q in consumers) or "no queue"
    return {
        "address": event_type,
        "title": event_type,
        "description": (
            f"Published by {model.published_by} on `{topology.exchanges.events}` "
            f"with routing key `{event_type}`; consumed from {received}."
        ),
        "messages": {event_type: {"$ref": f"#/components/messages/{event_type}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": topology.exchanges.events,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def queue_channel(queue: QueueSpec, topology: Topology) -> Document:
    bound = ", ".join(f"`{t}`" for t in queue.bindings)
    return {
        "address": queue.name,
        "title": queue.name,
        "description": (
            f"A work queue of {queue.service}, bound to `{topology.exchanges.events}` for {bound}. "
            + retry_story(queue)
        ),
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in queue.bindings},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue.name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def retry_story(queue: QueueSpec) -> str:
    """What happens to a message that fails on ``queue``, in words."""
    dead = f"`{dead_letter_queue_name(queue.name)}`"
    if queue.max_attempts == 1:
        told = f"One attempt: a failure goes to {dead}."
    else:
        waits = [queue.delay_before_attempt(n) for n in range(2, queue.max_attempts + 1)]
        tiers = ", ".join(f"`{retry_queue_name(queue.name, d)}`" for d in queue.retry_tiers)
        told = (
            f"Up to {queue.max_attempts} attempts, waiting "
            f"{', '.join(format_delay(w) for w in waits)} before the next ({tiers}); "
            f"then, or at once for a permanent error, {dead}."
        )
    if queue.lane is not None:
        told += f" Lane {queue.lane}"
        told += f", within {format_delay(queue.sla_seconds)}." if queue.sla_seconds else "."
    return told


# --- operations -------------------------------------------------------------------------------


def service_operations(
    spec: ServiceSpec, topology: Topology, catalog: Mapping[str, type[EventPayload]]
) -> dict[str, Document]:
    """What one service sends (the types it owns) and receives (its queues)."""
    tags = [{"name": spec.name}]
    found: dict[str, Document] = {}
    for event_type, model in catalog.items():
        if model.published_by != spec.name:
            continue
        found[f"{spec.name}.send.{event_type}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{event_type}"}],
            "summary": f"{spec.name} publishes {event_type} (from its outbox, by the relay)",
            "tags": tags,
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
    for queue in topology.for_service(spec.name).queues:
        found[f"{spec.name}.receive.{queue.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{queue.name}"},
            "messages": [
                {"$ref": f"#/channels/{queue.name}/messages/{event_type}"}
                for event_type in queue.bindings
            ],
            "summary": f"{spec.name} consumes {queue.name}",
            "tags": tags,
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }
    return found


def service_tag(spec: ServiceSpec) -> Document:
    processes = ", ".join(f"`python -m {p.module}`" for p in spec.processes)
    return {"name": spec.name, "description": f"The {spec.name} service: {processes}."}


# --- messages and schemas ---------------------------------------------------------------------


def message(event_type: str, model: type[EventPayload]) -> Document:
    return {
        "name": event_type,
        "title": model.__name__,
        "summary": f"{event_type}, version {model.version}, published by {model.published_by}",
        "contentType": CONTENT_TYPE,
        "headers": headers_schema(model),
        "payload": {
            "allOf": [
                {"$ref": f"{SCHEMAS}{Envelope.__name__}"},
                {
                    "properties": {
                        "type": {"const": event_type},
                        "version": {"const": model.version},
                        "payload": {"$ref": f"{SCHEMAS}{model.__name__}"},
                    }
                },
            ]
        },
        "correlationId": {
            "description": "Follows one request through every hop (also the AMQP correlation id)",
            "location": "$message.payload#/correlation_id",
        },
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def headers_schema(model: type[EventPayload]) -> Document:
    """The AMQP headers of the event: the relay's signature (``shared.events.signing``), and on
    a retried delivery what the consumer runtime adds (``shared.consumer.policy``)."""
    return {
        "type": "object",
        "properties": {
            SIGNED_BY_HEADER: {
                "type": "string",
                "const": model.published_by,
                "description": "The service whose key signed the body: the type's owner",
            },
            SIGNATURE_HEADER: {
                "type": "string",
                "contentEncoding": "base64",
                "description": "Ed25519 signature of the body's exact bytes",
            },
            ATTEMPT: {
                "type": "integer",
                "minimum": 2,
                "description": "On a retried delivery: the attempt it is",
            },
            FIRST_SEEN: {
                "type": "string",
                "format": "date-time",
                "description": "On a retried delivery: when the first attempt failed",
            },
            LAST_ERROR: {
                "type": "string",
                "description": "On a retried delivery: the error the previous attempt ended in",
            },
        },
        "required": [SIGNED_BY_HEADER, SIGNATURE_HEADER],
    }


def payload_schemas(models: Iterable[type[EventPayload]]) -> Document:
    """JSON schemas of the envelope and every payload model, and of the models they nest,
    referring to each other inside ``components.schemas``."""
    every: list[type[BaseModel]] = [Envelope, *models]
    _, found = models_json_schema(
        [(model, "validation") for model in every],
        ref_template=SCHEMAS + "{model}",
    )
    schemas: Document = found.get("$defs", {})
    return schemas

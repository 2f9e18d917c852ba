"""Hostile messages on a work queue: each goes to the DLQ at once, with headers saying why,
the handler never sees it, and the consumer goes on. On the in-memory broker and on RabbitMQ
(the ``harness`` fixture runs each test on both)."""

from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from shared.broker.base import BrokerMessage
from shared.consumer.policy import (
    ERROR_ATTEMPT,
    ERROR_KIND,
    ERROR_MESSAGE,
    ERROR_QUEUE,
    ERROR_SERVICE,
    ERROR_TYPE,
)
from shared.consumer.runtime import DEFAULT_MAX_MESSAGE_BYTES
from tests.behaviour.conftest import Harness
from tests.behaviour.test_consumer import Recorder, event_message, start_consumer
from tests.support.infra import Infra
from tests.support.waiting import eventually


async def publish_raw(infra: Infra, exchange: str, routing_key: str, body: bytes) -> None:
    """Publish without a message_id, as a client other than ours may: our AMQP client adds
    one to every message, so this goes through the management API instead."""
    vhost = unquote(urlsplit(infra.rabbitmq_url).path.lstrip("/")) or "/"
    base = (infra.management_url or "http://127.0.0.1:15672/").rstrip("/")
    url = f"{base}/api/exchanges/{quote(vhost, safe='')}/{quote(exchange, safe='')}/publish"
    payload = {
        "properties": {"content_type": "application/json", "delivery_mode": 2},
        "routing_key": routing_key,
        "payload": body.decode(),
        "payload_encoding": "string",
    }
    auth = (infra.management_user, infra.management_password)
    async with httpx.AsyncClient(auth=auth, timeout=10) as client:
        response = await client.post(url, json=payload)
    response.raise_for_status()
    assert response.json() == {"routed": True}


def oversized() -> BrokerMessage:
    # Valid JSON and a valid envelope, only padded past the limit: the size alone refuses it.
    message = event_message()
    padding = b" " * (DEFAULT_MAX_MESSAGE_BYTES + 1)
    return dataclasses.replace(message, body=message.body + padding)


def wrong_content_type() -> BrokerMessage:
    return dataclasses.replace(event_message(), content_type="text/plain")


def no_content_type() -> BrokerMessage:
    return dataclasses.replace(event_message(), content_type="")


def no_message_id() -> BrokerMessage:
    return dataclasses.replace(event_message(), message_id=None)


def foreign_message_id() -> BrokerMessage:
    return dataclasses.replace(event_message(), message_id=str(uuid.uuid4()))


HOSTILE = {
    "oversized body": (oversized, "exceeds"),
    "wrong content type": (wrong_content_type, "content type 'text/plain'"),
    "no content type": (no_content_type, "content type"),
    "missing message_id": (no_message_id, "no message_id"),
    "message_id not the envelope's": (foreign_message_id, "differs from the envelope"),
}


@pytest.mark.parametrize(("make", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_message_is_dead_lettered_with_its_reason(
    harness: Harness,
    namespace: str,
    make: object,
    reason: str,
    request: pytest.FixtureRequest,
) -> None:
    # Given a consumer on a work queue
    spec = harness.queue_spec(f"{namespace}.work")
    await harness.declare(spec)
    handler = Recorder()
    consumer = await start_consumer(harness, spec, handler)
    # When a hostile message arrives, followed by a good one
    assert callable(make)
    hostile: BrokerMessage = make()
    if hostile.message_id is None and harness.kind == "rabbitmq":
        infra = request.getfixturevalue("infra")
        await publish_raw(infra, harness.exchanges.events, spec.name, hostile.body)
    else:
        await harness.send(spec.name, hostile)
    await harness.send(spec.name, event_message())
    # Then the hostile one is in the DLQ at once, saying why
    [dead] = await harness.dead_letters(spec.name, 1)
    assert dead.headers[ERROR_TYPE] == "UndecodableMessage"
    assert dead.headers[ERROR_KIND] == "permanent"
    assert dead.headers[ERROR_ATTEMPT] == 1
    assert dead.headers[ERROR_QUEUE] == spec.name
    assert dead.headers[ERROR_SERVICE] == "tests"
    assert reason in str(dead.headers[ERROR_MESSAGE])
    # And the handler only ever saw the good one, which was processed
    await eventually(lambda: consumer.outcomes["processed"] == 1, what="the good message")
    assert len(handler.calls) == 1
    assert await harness.effects() == 1
    await consumer.stop()

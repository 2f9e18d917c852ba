"""The broker port on RabbitMQ, through aio-pika.

Library errors are translated here, at the boundary, into ``shared.errors``: nothing above
this module knows aio-pika's exception types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    FieldValue,
    HeadersType,
)

from shared.broker.base import BrokerMessage, DeliveryHandler, Headers, HeaderValue
from shared.broker.failover import connect_to_nodes
from shared.errors import (
    AccessRefused,
    MissingQueue,
    PublishFailed,
    PublishRefused,
    TopologyMismatch,
    Unroutable,
)
from shared.topology import (
    BindingDeclaration,
    Declaration,
    ExchangeDeclaration,
    QueueDeclaration,
    Topology,
    declarations,
    retired_bindings,
)

_EXCHANGE_TYPES = {
    "topic": aio_pika.ExchangeType.TOPIC,
    "direct": aio_pika.ExchangeType.DIRECT,
    "fanout": aio_pika.ExchangeType.FANOUT,
}


class RabbitDelivery:
    def __init__(self, incoming: AbstractIncomingMessage, headers: Headers | None = None) -> None:
        self._incoming = incoming
        self.message = BrokerMessage(
            body=incoming.body,
            message_id=incoming.message_id,
            content_type=incoming.content_type or "",
            content_encoding=incoming.content_encoding,
            type=incoming.type,
            correlation_id=incoming.correlation_id,
            timestamp=incoming.timestamp,
            headers=_plain_headers(incoming.headers) if headers is None else headers,
        )
        self.redelivered = bool(incoming.redelivered)

    async def ack(self) -> None:
        await self._incoming.ack()

    async def requeue(self) -> None:
        await self._incoming.nack(requeue=True)


class RabbitSubscription:
    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue, tag: str) -> None:
        self._channel = channel
        self._queue = queue
        self._tag = tag

    async def cancel(self) -> None:
        await self._queue.cancel(self._tag)

    async def close(self) -> None:
        """Close the channel: unacknowledged deliveries return to the queue."""
        await self._channel.close()


class RabbitFetch:
    """``basic.get`` on a channel of its own: closing the channel returns what was taken and
    not acknowledged."""

    def __init__(self, queue: AbstractQueue, depth: int) -> None:
        self._queue = queue
        self.depth = depth

    async def get(self) -> RabbitDelivery | None:
        try:
            incoming = await self._queue.get(no_ack=False, fail=False)
        except aiormq.exceptions.ChannelAccessRefused as error:
            raise AccessRefused(f"this login may not read {self._queue.name!r}: {error}") from error
        if incoming is None:
            return None
        # Shown to operators as they are: keep the broker's own tables (x-death) readable.
        return RabbitDelivery(incoming, headers=_json_headers(incoming.headers))


class RabbitBroker:
    """One robust connection: it reconnects by itself, restoring channels and consumers."""

    def __init__(self, connection: AbstractRobustConnection, publish_timeout: float) -> None:
        self._connection = connection
        self._publish_timeout = publish_timeout
        self._publish_channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._channel_lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls, url: str | Sequence[str], *, connection_name: str, publish_timeout: float = 10.0
    ) -> RabbitBroker:
        """To the first node that answers (one URL, or one per node of a cluster:
        ``shared.broker.nodes``); after a connection is lost, to the next."""
        urls = [url] if isinstance(url, str) else list(url)
        connection = await connect_to_nodes(urls, connection_name=connection_name)
        return cls(connection, publish_timeout)

    async def declare(self, topology: Topology) -> None:
        """Declare the whole topology, so that any start order leaves every queue in place.

        A least-privilege login (``deploy/rabbitmq/definitions.json``) may configure only its
        own queues: whatever it is refused must already exist (the operator loaded the
        definitions), so it is checked passively, and the bindings of a queue it may not
        declare are left to the operator. Declarations run on raw channels: a refusal closes
        only that channel, and no robust channel re-opens itself to replay it.
        """
        transport = self._connection.transport
        if transport is None:
            raise ConnectionError("not connected to the broker")
        connection = transport.connection
        channel = await connection.channel()
        foreign: set[str] = set()
        try:
            for item in declarations(topology):
                if isinstance(item, BindingDeclaration) and item.queue in foreign:
                    continue
                try:
                    await _declare(channel, item)
                except aiormq.exceptions.ChannelAccessRefused:
                    if isinstance(item, BindingDeclaration):
                        raise
                    channel = await connection.channel()
                    await _check_exists(channel, item)
                    foreign.add(item.name)
            for retired in retired_bindings(topology):
                try:
                    await channel.queue_unbind(
                        retired.queue, retired.exchange, routing_key=retired.routing_key
                    )
                except (
                    aiormq.exceptions.ChannelAccessRefused,
                    aiormq.exceptions.ChannelNotFoundEntity,
                ):
                    # Another service's queue (its own start-up removes it), or none at all.
                    channel = await connection.channel()
        finally:
            if not channel.is_closed:
                await channel.close()

    async def publish(self, exchange: str, routing_key: str, message: BrokerMessage) -> None:
        target = await self._exchange(exchange)
        try:
            await target.publish(
                _to_amqp(message),
                routing_key,
                mandatory=True,
                timeout=self._publish_timeout,
            )
        except aio_pika.exceptions.PublishError as error:
            raise Unroutable(
                f"no queue is bound to {exchange!r} for routing key {routing_key!r}"
            ) from error
        except aio_pika.exceptions.DeliveryError as error:
            raise PublishFailed(f"broker refused the message: {error}") from error
        except aiormq.exceptions.ChannelAccessRefused as error:
            # The channel is closed with it; the next publish opens another.
            raise PublishRefused(
                f"the broker refused this login publishing to {exchange!r} with routing key "
                f"{routing_key!r}: {error}"
            ) from error
        except (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError) as error:
            raise PublishFailed(f"publish to {exchange!r} failed: {error!r}") from error

    async def consume(
        self, queue: str, prefetch: int, handler: DeliveryHandler
    ) -> RabbitSubscription:
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        amqp_queue = await channel.get_queue(queue, ensure=True)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            await handler(RabbitDelivery(incoming))

        tag = await amqp_queue.consume(on_message)
        return RabbitSubscription(channel, amqp_queue, tag)

    async def listen(
        self, exchange: str, queue: str, handler: DeliveryHandler
    ) -> RabbitSubscription:
        channel = await self._connection.channel()
        # One at a time, in order: a pause and a resume never overtake each other.
        await channel.set_qos(prefetch_count=1)
        try:
            # Passive: the topology declaration made it; a least-privilege login
            # (definitions.json) may configure only its own private queues.
            fanout = await channel.declare_exchange(
                exchange, aio_pika.ExchangeType.FANOUT, durable=True, passive=True
            )
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            raise TopologyMismatch(f"no exchange {exchange!r} to listen to: {error}") from error
        private = await channel.declare_queue(
            queue, exclusive=True, auto_delete=True, arguments={"x-queue-type": "classic"}
        )
        await private.bind(fanout)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            await handler(RabbitDelivery(incoming))

        tag = await private.consume(on_message)
        return RabbitSubscription(channel, private, tag)

    @contextlib.asynccontextmanager
    async def fetch(self, queue: str) -> AsyncIterator[RabbitFetch]:
        channel = await self._connection.channel()
        try:
            try:
                found = await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise MissingQueue(queue) from None
            except aiormq.exceptions.ChannelAccessRefused as error:
                raise AccessRefused(f"this login may not read {queue!r}: {error}") from error
            yield RabbitFetch(found, int(found.declaration_result.message_count or 0))
        finally:
            # Everything taken and not acknowledged goes back to its queue now.
            if not channel.is_closed:
                await channel.close()

    async def close(self) -> None:
        await self._connection.close()

    async def _exchange(self, name: str) -> AbstractExchange:
        try:
            async with self._channel_lock:
                if self._publish_channel is None or self._publish_channel.is_closed:
                    self._publish_channel = await self._connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    self._exchanges.clear()
                if name not in self._exchanges:
                    self._exchanges[name] = await self._publish_channel.get_exchange(
                        name, ensure=False
                    )
                return self._exchanges[name]
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
            raise PublishFailed(f"no channel to publish on: {error!r}") from error


async def _declare(channel: aiormq.abc.AbstractChannel, item: Declaration) -> None:
    if isinstance(item, ExchangeDeclaration):
        await channel.exchange_declare(item.name, exchange_type=item.kind, durable=True)
    elif isinstance(item, QueueDeclaration):
        try:
            await channel.queue_declare(item.name, durable=True, arguments=dict(item.arguments))
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            raise TopologyMismatch(
                f"queue {item.name!r} already exists with other arguments than declared "
                f"{dict(item.arguments)}; the broker says: {error}. Delete the queue (after "
                f"moving its messages) or change the declaration back."
            ) from error
    else:
        await channel.queue_bind(item.queue, item.exchange, routing_key=item.routing_key)


async def _check_exists(
    channel: aiormq.abc.AbstractChannel, item: ExchangeDeclaration | QueueDeclaration
) -> None:
    try:
        if isinstance(item, ExchangeDeclaration):
            await channel.exchange_declare(item.name, passive=True)
        else:
            await channel.queue_declare(item.name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as error:
        raise TopologyMismatch(
            f"{item.name!r} does not exist and this login may not declare it: load "
            f"deploy/rabbitmq/definitions.json into the broker (or connect as a user that may)"
        ) from error


def _to_amqp(message: BrokerMessage) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        type=message.type,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        headers=_amqp_table(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _amqp_table(headers: Headers) -> HeadersType:
    return {key: _amqp_value(value) for key, value in headers.items()}


def _amqp_value(value: HeaderValue) -> FieldValue:
    if isinstance(value, Mapping):
        return _amqp_table(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_amqp_value(item) for item in value]
    return value


def _plain_headers(headers: dict[str, Any] | None) -> Headers:
    """Scalars only: tables and arrays (x-death) are kept readable, not interpreted."""
    return {key: _scalar(value) for key, value in (headers or {}).items()}


def _json_headers(headers: dict[str, Any] | None) -> Headers:
    """Every value as JSON can carry it, tables and arrays included."""
    return {key: _json_value(value) for key, value in (headers or {}).items()}


def _json_value(value: Any) -> HeaderValue:
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return _scalar(value)


def _scalar(value: Any) -> HeaderValue:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | bool | float) or value is None:
        return value
    return repr(value)

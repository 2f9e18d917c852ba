"""Commands to the running processes (pause / resume): the consumer runtime's other entry.

    fanout exchange --> a queue of this process's own --> handler(message) --> ack

A command is no event: nothing to claim, retry or dead-letter. It is handled once, one at a
time and in order, and acknowledged whatever the handler did: a command the handler could
not carry out is logged and dropped, and the operator, who sees the state unchanged, sends it
again. The private queue goes with the process, so nothing would be gained by keeping it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from shared.broker.base import Broker, BrokerMessage, Delivery, Subscription

log = structlog.get_logger("consumer.commands")

CommandHandler = Callable[[BrokerMessage], Awaitable[None]]


async def listen_for_commands(
    broker: Broker, exchange: str, queue: str, handler: CommandHandler
) -> Subscription:
    async def on_delivery(delivery: Delivery) -> None:
        try:
            await handler(delivery.message)
        except Exception as error:
            log.error("command failed, dropped", queue=queue, error=repr(error))
        finally:
            try:
                await delivery.ack()
            except Exception as error:  # the channel is gone, and the private queue with it
                log.warning("could not acknowledge a command", error=repr(error))

    return await broker.listen(exchange, queue, on_delivery)

"""Each service's broker login, as the definitions document grants it, in a throw-away virtual
host under throw-away user names: for tests of what the broker refuses."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
import pytest

from deploy.definitions.users import OPS, dev_password
from devtools.broker_users import Management, delete_users, provision
from shared.manifest import service_names
from tests.support.infra import Infra


@dataclass(frozen=True)
class BrokerLogins:
    vhost: str
    users: dict[str, str]  # service -> throw-away user name
    amqp_base: str  # amqp://host:port
    admin_url: str  # the administrator's login, in the same virtual host

    def url(self, service: str) -> str:
        if service == "admin":
            return self.admin_url
        user = quote(self.users[service], safe="")
        return (
            f"amqp://{user}:{dev_password(service)}@{self.amqp_base}/{quote(self.vhost, safe='')}"
        )


def management(infra: Infra) -> tuple[str, tuple[str, str]]:
    base = (infra.management_url or "http://127.0.0.1:15672/").rstrip("/")
    return base, (infra.management_user, infra.management_password)


@pytest.fixture
async def broker_logins(infra: Infra) -> AsyncIterator[BrokerLogins]:
    """The definitions document's users, permissions and topic permissions, in a vhost of
    their own, under throw-away user names."""
    vhost = f"lp_{uuid.uuid4().hex[:8]}"
    users = {login: f"{vhost}.{login}" for login in (*service_names(), OPS)}
    base, (user, password) = management(infra)
    admin = Management(base, user, password)
    admin_user = urlsplit(infra.rabbitmq_url).username or "guest"
    try:
        await provision(admin, vhost, admin_user, user_names=users)
        parts = urlsplit(infra.rabbitmq_url)
        admin_url = urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
        yield BrokerLogins(vhost, users, f"{parts.hostname}:{parts.port or 5672}", admin_url)
    finally:
        await delete_users(admin, list(users.values()))
        async with httpx.AsyncClient(auth=(user, password), timeout=30) as client:
            await client.delete(f"{base}/api/vhosts/{quote(vhost, safe='')}")


@contextlib.asynccontextmanager
async def channel_of(
    logins: BrokerLogins, service: str
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(logins.url(service))
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def may_consume(logins: BrokerLogins, service: str, queue_name: str) -> bool:
    async with channel_of(logins, service) as channel:
        try:
            queue = await channel.get_queue(queue_name, ensure=False)
            tag = await queue.consume(_ignore)
            await queue.cancel(tag)
        except aiormq.exceptions.ChannelAccessRefused:
            return False
    return True


async def may_publish(
    logins: BrokerLogins,
    service: str,
    exchange_name: str,
    routing_key: str = "probe.none",
    message: aio_pika.Message | None = None,
) -> bool:
    """Whether the broker confirms the publish (it closes the channel when it refuses)."""
    async with channel_of(logins, service) as channel:
        try:
            exchange = await channel.get_exchange(exchange_name, ensure=False)
            await exchange.publish(
                message or aio_pika.Message(b"{}", message_id="probe"), routing_key=routing_key
            )
        except aiormq.exceptions.ChannelAccessRefused:
            return False
    return True


async def _ignore(message: Any) -> None:
    await message.nack(requeue=True)

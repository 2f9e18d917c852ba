"""Least privilege: each service's Postgres role and RabbitMQ user can reach its own things
and is refused everyone else's.

Postgres: the roles and schemas are made exactly as ``shared.db.migrations`` makes the real
ones (one role owning one schema, the service's migrations run as it, the relay granted the
outboxes), under throw-away names; and, on the running system's own database, the real roles.
RabbitMQ: ``deploy/rabbitmq/definitions.json``'s users and permissions, exported from the code
as the committed file is, loaded into a throw-away virtual host under throw-away user names.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiormq
import httpx
import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from services.api.admin.dead_letters import DeadLetterQueues
from services.api.admin.replay import Selector
from services.api.app import create_app
from services.api.settings import ApiSettings
from shared.broker.base import BrokerMessage, Delivery
from shared.broker.rabbitmq import RabbitBroker
from shared.control import NoListener, control_queue_name, new_command, send_command
from shared.db.migrations import grant_outbox_access, migrate_service
from shared.db.pool import role_conninfo
from shared.errors import AccessRefused
from shared.manifest import SERVICES as MANIFEST
from shared.manifest import service_names
from shared.system_topology import SYSTEM_TOPOLOGY
from shared.topology import retry_queue_name
from tests.integration.api.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.broker_logins import BrokerLogins, channel_of, may_consume, may_publish
from tests.support.infra import Infra
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

SERVICES = service_names()
# The services that own a schema of note (the relay's holds only the shared tables).
MIGRATIONS = {s.name: [s.migrations] for s in MANIFEST if s.has_outbox and s.migrations}
OWNERS = tuple(MIGRATIONS)
RELAY_MAY = {"outbox"}  # what the relay is granted in every other schema


# --- Postgres --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    role: str
    password: str


async def tables_of(admin_url: str, schema: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        rows = await (
            await admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        ).fetchall()
    return sorted(name for (name,) in rows)


async def may_run(database_url: str, login: Login, statement: sql.Composable) -> bool:
    conninfo = role_conninfo(database_url, login.role, login.password)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        try:
            await conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return False
    return True


async def may_select(database_url: str, login: Login, schema: str, table: str) -> bool:
    statement = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, table))
    return await may_run(database_url, login, statement)


async def may_create_in(database_url: str, login: Login, schema: str) -> bool:
    conninfo = role_conninfo(database_url, login.role, login.password)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        try:
            await conn.execute(
                sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(schema, "intruder"))
            )
        except psycopg.errors.InsufficientPrivilege:
            return False
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "intruder")))
    return True


async def assert_schemas_isolated(
    database_url: str, schemas: dict[str, str], logins: dict[str, Login]
) -> int:
    """Every service's role against every other service's schema, table by table. ``schemas``
    maps service -> schema name; returns the number of refusals seen."""
    refused = 0
    for reader, owner in itertools.permutations([*OWNERS, "relay"], 2):
        if owner == "relay":
            continue
        schema = schemas[owner]
        tables = await tables_of(database_url, schema)
        assert "outbox" in tables and len(tables) > 3, (schema, tables)
        for table in tables:
            allowed = reader == "relay" and table in RELAY_MAY
            may = await may_select(database_url, logins[reader], schema, table)
            assert may == allowed, f"{reader} reading {schema}.{table}: {may}"
            refused += not may
        assert not await may_create_in(database_url, logins[reader], schema), (reader, schema)
    # and each one does read its own
    for owner in OWNERS:
        assert await may_select(database_url, logins[owner], schemas[owner], "outbox")
    return refused


@pytest.fixture
async def throwaway_schemas(infra: Infra) -> AsyncIterator[tuple[dict[str, str], dict[str, Login]]]:
    prefix = f"lp{uuid.uuid4().hex[:8]}"
    names = {service: f"{prefix}_{service}" for service in [*OWNERS, "relay"]}
    logins = {service: Login(name, f"pw-{name}") for service, name in names.items()}
    try:
        for service, packages in MIGRATIONS.items():
            await migrate_service(
                infra.database_url, names[service], logins[service].password, packages
            )
        await migrate_service(infra.database_url, names["relay"], logins["relay"].password, [])
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            await grant_outbox_access(admin, names["relay"], [names[s] for s in OWNERS])
        yield names, logins
    finally:
        async with await psycopg.AsyncConnection.connect(
            infra.database_url, autocommit=True
        ) as admin:
            for name in names.values():
                await admin.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
                with contextlib.suppress(psycopg.errors.UndefinedObject):
                    await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                await admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


async def may_delete_from(database_url: str, login: Login, schema: str, table: str) -> bool:
    statement = sql.SQL("DELETE FROM {} WHERE false").format(sql.Identifier(schema, table))
    return await may_run(database_url, login, statement)


@pytest.mark.integration
async def test_the_relay_marks_outbox_rows_and_never_deletes_them(
    infra: Infra, throwaway_schemas: tuple[dict[str, str], dict[str, Login]]
) -> None:
    schemas, logins = throwaway_schemas
    # (each service's own sweeper trims its outbox: the relay needs no DELETE)
    for owner in OWNERS:
        assert await may_select(infra.database_url, logins["relay"], schemas[owner], "outbox")
        assert not await may_delete_from(
            infra.database_url, logins["relay"], schemas[owner], "outbox"
        ), owner
        assert await may_delete_from(infra.database_url, logins[owner], schemas[owner], "outbox")


@pytest.mark.integration
async def test_no_service_role_reads_another_services_schema(
    infra: Infra, throwaway_schemas: tuple[dict[str, str], dict[str, Login]]
) -> None:
    schemas, logins = throwaway_schemas
    # When every role tries every table of every other service's schema
    refused = await assert_schemas_isolated(infra.database_url, schemas, logins)
    # Then each is refused (the relay only reads the outboxes), and none may create tables there
    assert refused > 4 * 3 * 3


@pytest.mark.e2e
async def test_the_real_roles_of_the_running_system_are_isolated(system: RunningSystem) -> None:
    # Given the system's database, migrated by `python -m shared.db.migrate` as in production
    schemas = {service: service for service in [*OWNERS, "relay"]}
    logins = {
        service: Login(
            service,
            system.env.get(f"{service.upper()}_DB_PASSWORD", f"{service}-dev-password"),
        )
        for service in schemas
    }
    # Then, e.g., verifier cannot SELECT from api.applications, for every pair
    assert not await may_select(system.database_url, logins["verifier"], "api", "applications")
    await assert_schemas_isolated(system.database_url, schemas, logins)


# --- RabbitMQ --------------------------------------------------------------------------------


def usable_routing_key(service: str, exchange: str) -> str:
    """A routing key the service's own work uses on ``exchange`` (topic permissions narrow the
    keys further: ``tests/security/test_forged_events.py``)."""
    ex = SYSTEM_TOPOLOGY.exchanges
    own = [spec for spec in SYSTEM_TOPOLOGY.queues if spec.service == service]
    if exchange == ex.retry and own:
        return retry_queue_name(own[0].name, own[0].retry_tiers[0])
    if exchange == ex.dead and own:
        return own[0].name
    if exchange == ex.events:
        return "application.submitted"
    return "probe.none"


def work_queues() -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {}
    for spec in SYSTEM_TOPOLOGY.queues:
        owned.setdefault(spec.service, []).append(spec.name)
    return owned


@pytest.mark.integration
async def test_each_broker_user_consumes_only_its_own_queues(broker_logins: BrokerLogins) -> None:
    owned = work_queues()
    assert set(owned) == {"api", "verifier", "payments", "mailer"}
    for service in SERVICES:
        for owner, queues in owned.items():
            for queue in queues:
                # When the service's user tries to consume the queue
                allowed = await may_consume(broker_logins, service, queue)
                # Then only the owner may (the relay consumes nothing)
                assert allowed == (owner == service), f"{service} consuming {queue}: {allowed}"


@pytest.mark.integration
async def test_each_broker_user_publishes_only_where_it_must(broker_logins: BrokerLogins) -> None:
    exchanges = SYSTEM_TOPOLOGY.exchanges
    consumers = set(work_queues())
    expected = {
        exchanges.events: {"relay"},  # events enter the bus only through the outbox relay
        exchanges.control: set(),  # pause / resume: the admin API's ops login only
        exchanges.retry: consumers,  # every consumer retries and dead-letters its own messages
        exchanges.dead: consumers,
    }
    for exchange, publishers in expected.items():
        for service in SERVICES:
            allowed = await may_publish(
                broker_logins, service, exchange, usable_routing_key(service, exchange)
            )
            assert allowed == (service in publishers), f"{service} publishing to {exchange}"
    # And a dead-letter queue is not readable by another consumer (only the admin API's ops
    # login, which replays them)
    assert not await may_consume(broker_logins, "payments", "verifier.documents.dlq")
    assert await may_consume(broker_logins, "ops", "verifier.documents.dlq")


async def may_purge(logins: BrokerLogins, login: str, queue_name: str) -> bool:
    async with channel_of(logins, login) as channel:
        try:
            await (await channel.get_queue(queue_name, ensure=False)).purge()
        except aiormq.exceptions.ChannelAccessRefused:
            return False
    return True


@pytest.mark.integration
async def test_the_api_login_cannot_purge_dead_letters_only_the_ops_login_reads_them(
    broker_logins: BrokerLogins,
) -> None:
    """issue 14, item 8: RabbitMQ's read permission, which reading a DLQ needs, also allows
    queue.purge; the api's login serves the internet-facing replicas, so it reads no DLQ."""
    dead_letter_queues = [f"{spec.name}.dlq" for spec in SYSTEM_TOPOLOGY.queues]
    for queue in dead_letter_queues:
        # When the api's login (and every other service's) purges a DLQ, the broker refuses
        for service in SERVICES:
            assert not await may_purge(broker_logins, service, queue), f"{service} purged {queue}"
    # And the ops login reads every DLQ, and no work queue or retry tier
    for queue in dead_letter_queues:
        assert await may_consume(broker_logins, "ops", queue)
    for spec in SYSTEM_TOPOLOGY.queues:
        assert not await may_consume(broker_logins, "ops", spec.name)
        assert not await may_purge(broker_logins, "ops", spec.name)
    # And it replays only into work queues through the retry exchange, sends control
    # commands, and publishes no event
    exchanges = SYSTEM_TOPOLOGY.exchanges
    assert await may_publish(broker_logins, "ops", exchanges.retry, "verifier.documents")
    assert not await may_publish(
        broker_logins, "ops", exchanges.retry, retry_queue_name("verifier.documents", 2.0)
    )
    assert not await may_publish(broker_logins, "ops", exchanges.events, "payment.completed")
    assert not await may_publish(broker_logins, "api", exchanges.control)


# --- the admin API's broker work, through the broker port -----------------------------------


@pytest.mark.integration
async def test_dead_letters_and_control_commands_go_through_the_port_as_the_ops_login(
    broker_logins: BrokerLogins,
) -> None:
    """What the admin API does on the broker (``DeadLetterQueues``, ``send_command``) and what
    a worker does to hear commands (``Broker.listen``), each with the login it runs as."""
    exchanges = SYSTEM_TOPOLOGY.exchanges
    queue = "verifier.documents"
    brokers = {
        login: await RabbitBroker.connect(broker_logins.url(login), connection_name=f"lp-{login}")
        for login in ("admin", "api", "ops", "verifier")
    }
    try:
        # Given a dead letter in the verifier's DLQ
        dead = BrokerMessage(body=b"{}", message_id=str(uuid.uuid4()))
        await brokers["admin"].publish(exchanges.dead, queue, dead)
        command = new_command("pause", queue, "ops@example.org", datetime.now(UTC))

        # When the api's own login reads it or sends a command, the broker refuses both (the
        # admin API answers 503: set OPS_RABBITMQ_URL)
        with pytest.raises(AccessRefused):
            await DeadLetterQueues(brokers["api"], exchanges).scan(queue, limit=10)
        with pytest.raises(AccessRefused):
            await send_command(brokers["api"], exchanges.control, command)

        # Then the ops login reads it, and may send a command (which nobody hears yet)
        scan = await DeadLetterQueues(brokers["ops"], exchanges).scan(queue, limit=10)
        assert [letter.message_id for letter in scan.letters] == [dead.message_id]
        with pytest.raises(NoListener):
            await send_command(brokers["ops"], exchanges.control, command)

        # And a worker's login listens on a control queue of its own and hears it
        heard: list[bytes] = []

        async def hear(delivery: Delivery) -> None:
            heard.append(delivery.message.body)
            await delivery.ack()

        private = control_queue_name("verifier", uuid.uuid4().hex)
        listening = await brokers["verifier"].listen(exchanges.control, private, hear)
        await send_command(brokers["ops"], exchanges.control, command)
        await eventually(lambda: heard == [command.encode()], what="the command")
        await listening.close()

        # And the ops login replays the dead letter into its work queue
        outcome = await DeadLetterQueues(brokers["ops"], exchanges).replay(
            queue,
            Selector(all=True),
            dry_run=False,
            rate_per_second=50,
            limit=10,
            replayed_by="ops@example.org",
        )
        assert outcome.selected == [dead.message_id] and outcome.stopped_early is None
        async with brokers["admin"].fetch(queue) as work:
            replayed = await work.get()
            assert replayed is not None and replayed.message.message_id == dead.message_id
            await replayed.ack()
    finally:
        for broker in brokers.values():
            await broker.close()


@pytest.mark.integration
async def test_without_the_ops_login_the_admin_api_says_which_login_to_set(
    api_settings: ApiSettings, broker_logins: BrokerLogins
) -> None:
    # Given a dead letter, and an API replica whose only broker login is the api's own
    admin = await RabbitBroker.connect(broker_logins.url("admin"), connection_name="lp-admin")
    try:
        dead = BrokerMessage(body=b"{}", message_id=str(uuid.uuid4()))
        await admin.publish(SYSTEM_TOPOLOGY.exchanges.dead, "verifier.documents", dead)
    finally:
        await admin.close()
    settings = api_settings.model_copy(
        update={"rabbitmq_url": SecretStr(broker_logins.url("api")), "ops_rabbitmq_url": None}
    )
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://api.test"
        ) as client,
    ):
        token = await client.post(
            "/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        # When an administrator reads the dead letters or pauses a queue
        for method, path in (
            ("GET", "/admin/dead-letters"),
            ("POST", "/admin/queues/verifier.documents/pause"),
        ):
            answer = await client.request(method, path, headers=headers)
            # Then the broker's refusal is a 503 that names the setting to fix
            assert answer.status_code == 503, (path, answer.text)
            assert "OPS_RABBITMQ_URL" in answer.json()["detail"]

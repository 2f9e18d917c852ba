"""Pausing and resuming a queue's consumers: every replica at once, and across restarts.

    operator --POST /admin/queues/<q>/pause--> api --send_command (confirmed)--> admissions.control
        (fanout) --> control.<service>.<uuid>, one queue per running worker process
        --> the workers that consume <q>: record (<q>, paused) in their own schema's
            queue_controls, then Consumer.stop() (resume: Consumer.start())

- A command is JSON ``{"action": "pause"|"resume", "queue", "requested_by", "at"}`` with an
  AMQP message_id. Every worker of every service hears every command (fanout: the API does not
  need to know who runs where); a worker that does not consume the named queue ignores it.
- Each process listens (``Broker.listen``) on its own classic, exclusive, auto-delete queue
  ``control.<service>.<uuid>``: it vanishes with the process, so the consumers of
  ``control.<service>.*`` queues are the worker processes of that service that listen now (the
  admin API reports that number). These queues are not in the topology declaration: their names
  exist only while a process runs. ``shared.consumer.commands`` acknowledges each command.
- The desired state is persisted by the workers themselves (``PauseStore``: the
  ``queue_controls`` table of their own schema; the API has no write access to it). Every
  replica writes the same row; a write only wins if its command is newer than the stored one,
  so replicas that apply the same commands at different times still agree on the last one.
- At start-up ``run_worker`` listens for commands *first*, then reads the stored state and
  starts only the queues that are not paused: no command can fall between reading the state and
  listening, and a paused queue stays paused across a restart (the management UI shows it with
  0 consumers). A lock serialises start-up and commands.
- With no worker listening (none running) a command reaches nobody: ``send_command`` raises
  ``NoListener``, and the admin API says so.

The parsing and the decisions are pure functions (``parse_command``, ``queues_to_start``,
``transition``); ``QueueControl`` is the thin adapter around them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from shared.broker.base import Broker, BrokerMessage
from shared.consumer.commands import CommandListener
from shared.errors import Unroutable

log = structlog.get_logger("control")

Action = Literal["pause", "resume"]
ACTIONS: tuple[Action, ...] = ("pause", "resume")
CONTENT_TYPE = "application/json"
CONTROL_QUEUE_PREFIX = "control"
_MAX_FIELD = 200


class InvalidCommand(ValueError):
    """The body is not a control command; it is dropped (logged), never retried."""


class NoListener(Exception):
    """A control command reached no queue: no worker of any service is running."""


@dataclass(frozen=True)
class ControlCommand:
    action: Action
    queue: str
    requested_by: str
    at: datetime
    message_id: str

    @property
    def paused(self) -> bool:
        return self.action == "pause"

    def encode(self) -> bytes:
        return json.dumps(
            {
                "action": self.action,
                "queue": self.queue,
                "requested_by": self.requested_by,
                "at": self.at.isoformat(),
            }
        ).encode()

    def to_message(self) -> BrokerMessage:
        return BrokerMessage(
            body=self.encode(),
            message_id=self.message_id,
            content_type=CONTENT_TYPE,
            timestamp=self.at,
        )


def new_command(action: Action, queue: str, requested_by: str, now: datetime) -> ControlCommand:
    if now.tzinfo is None:
        raise ValueError("the command time must be timezone-aware")
    return ControlCommand(action, queue, requested_by, now, str(uuid.uuid4()))


def parse_command(body: bytes, message_id: str | None = None) -> ControlCommand:
    """Bytes on the wire to a command, or ``InvalidCommand`` saying what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidCommand(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidCommand("a command is a JSON object")
    action = data.get("action")
    if action not in ACTIONS:
        raise InvalidCommand(f"action must be one of {ACTIONS}, not {action!r}")
    queue = _text(data, "queue")
    requested_by = _text(data, "requested_by")
    raw_at = _text(data, "at")
    try:
        at = datetime.fromisoformat(raw_at)
    except ValueError:
        raise InvalidCommand(f"at is not an ISO 8601 time: {raw_at!r}") from None
    if at.tzinfo is None:
        raise InvalidCommand("at must carry a timezone")
    return ControlCommand(action, queue, requested_by, at, message_id or "")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_FIELD:
        raise InvalidCommand(f"{key} must be a non-empty string of at most {_MAX_FIELD} chars")
    return value


def control_queue_name(service: str, instance: str) -> str:
    return f"{CONTROL_QUEUE_PREFIX}.{service}.{instance}"


def control_queue_prefix(service: str) -> str:
    """Every control queue of ``service``'s processes starts with this."""
    return f"{CONTROL_QUEUE_PREFIX}.{service}."


async def send_command(broker: Broker, exchange: str, command: ControlCommand) -> None:
    """Publish to the control exchange and wait for the broker's confirm; ``NoListener``
    when no worker listens."""
    try:
        await broker.publish(exchange, "", command.to_message())
    except Unroutable:
        raise NoListener("no worker is listening for control commands") from None


# --- decisions -------------------------------------------------------------------------------


def queues_to_start(owned: Iterable[str], paused: Iterable[str]) -> list[str]:
    """At start-up: the owned queues that are not paused, in the given order."""
    held = set(paused)
    return [queue for queue in owned if queue not in held]


def transition(paused: bool, consuming: bool) -> Literal["start", "stop"] | None:
    """What a consumer must do to match the desired state (None: it already does)."""
    if paused and consuming:
        return "stop"
    if not paused and not consuming:
        return "start"
    return None


# --- state in the service's schema -----------------------------------------------------------


class PauseStore(Protocol):
    """Where a worker keeps the desired state of its queues."""

    async def paused(self) -> set[str]: ...

    async def record(self, command: ControlCommand) -> bool:
        """Record the command's state unless a newer command is already recorded; True if
        written."""


class PostgresPauseStore:
    """The ``queue_controls`` table of the service's own schema."""

    def __init__(self, pool: AsyncConnectionPool, schema: str) -> None:
        self.pool = pool
        self.table = sql.Identifier(schema, "queue_controls")

    async def paused(self) -> set[str]:
        query = sql.SQL("SELECT queue FROM {} WHERE paused").format(self.table)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query)).fetchall()
        return {str(row[0]) for row in rows}

    async def record(self, command: ControlCommand) -> bool:
        statement = sql.SQL(
            "INSERT INTO {table} (queue, paused, updated_at, updated_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused,"
            " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by"
            " WHERE {table}.updated_at <= EXCLUDED.updated_at"
        ).format(table=self.table)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                statement, (command.queue, command.paused, command.at, command.requested_by)
            )
        return cursor.rowcount == 1


class MemoryPauseStore:
    """The same rule in a dict, for tests without Postgres."""

    def __init__(self) -> None:
        self.latest: dict[str, ControlCommand] = {}

    async def paused(self) -> set[str]:
        return {queue for queue, command in self.latest.items() if command.paused}

    async def record(self, command: ControlCommand) -> bool:
        stored = self.latest.get(command.queue)
        if stored is not None and stored.at > command.at:
            return False
        self.latest[command.queue] = command
        return True


# --- the adapter ------------------------------------------------------------------------------


class Pausable(Protocol):
    """What ``shared.consumer.runtime.Consumer`` offers for pausing."""

    @property
    def consuming(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self, timeout: float = 30.0) -> None: ...


class QueueControl:
    """One worker process's end of the control channel, owning its consumers' start/stop."""

    def __init__(
        self,
        *,
        service: str,
        store: PauseStore,
        consumers: Mapping[str, Pausable],
        broker: Broker,
        exchange: str,
    ) -> None:
        self.service = service
        self.store = store
        self.consumers = dict(consumers)
        self.queue_name = control_queue_name(service, uuid.uuid4().hex)
        self._listener = CommandListener(broker, exchange, self.queue_name, self.handle)
        self._lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> list[str]:
        """Listen for commands, then start the consumers whose queue is not paused; returns
        the queues left paused."""
        await self._listener.start()
        log.info("listening for control commands", queue=self.queue_name)
        async with self._lock:
            paused = await self.store.paused()
            for queue in queues_to_start(self.consumers, paused):
                await self.consumers[queue].start()
        held = sorted(paused & set(self.consumers))
        if held:
            log.warning("queues paused by an operator stay paused", queues=held)
        return held

    async def close(self) -> None:
        """Stop listening (before the consumers stop, so no resume races the shutdown)."""
        async with self._lock:
            self._closed = True
        await self._listener.close()

    async def handle(self, message: BrokerMessage) -> None:
        """A message from the control exchange (``shared.consumer.commands`` acknowledges it)."""
        try:
            command = parse_command(message.body, message.message_id)
        except InvalidCommand as error:
            log.error("invalid control command dropped", error=str(error))
            return
        await self.apply(command)

    async def apply(self, command: ControlCommand) -> Literal["start", "stop"] | None:
        """Persist and enact a command for a queue this process consumes (else ignore it)."""
        consumer = self.consumers.get(command.queue)
        if consumer is None:
            return None
        written = await self.store.record(command)
        async with self._lock:
            if self._closed:
                return None
            # A stale command (older than the stored state) must not override it.
            paused = command.paused if written else command.queue in await self.store.paused()
            change = transition(paused, consumer.consuming)
            if change == "stop":
                await consumer.stop()
            elif change == "start":
                await consumer.start()
        log.info(
            "queue control",
            queue=command.queue,
            action=command.action,
            requested_by=command.requested_by,
            change=change,
            stale=not written,
        )
        return change

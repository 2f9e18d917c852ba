"""The envelope every event travels in, and its wire encoding (UTF-8 JSON)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import UndecodableMessage
from shared.events.catalog import EventPayload

CONTENT_TYPE = "application/json"


class Envelope(BaseModel):
    """Metadata around a payload. ``message_id`` is also the AMQP message id, and the key
    idempotent consumers record; ``correlation_id`` follows one request through every hop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: uuid.UUID
    type: str = Field(min_length=1)
    version: int = Field(ge=1)
    occurred_at: datetime
    correlation_id: str = Field(min_length=1)
    causation_id: str | None = None
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def new_envelope(
    payload: EventPayload,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    message_id: uuid.UUID | None = None,
) -> Envelope:
    message_id = message_id or uuid.uuid4()
    return Envelope(
        message_id=message_id,
        type=payload.event_type,
        version=payload.version,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation_id or str(message_id),
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )


def decode_envelope(body: bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(body)
    except ValidationError as error:
        raise UndecodableMessage(f"not a valid event envelope: {_first_error(error)}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
